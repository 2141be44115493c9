"""The clipsketch model: curve-constrained, fixed-appearance Gaussians guided by CLIP.

Splatfacto learns free Gaussians; here the only learned tensor is the Bézier control points. Gaussian centres are
samples along the curves, and colour, opacity and size come from the stroke style. The loss is the sum of the guidance
terms (:mod:`nerfstudio_clipsketch.terms`), CLIPasso's first, weighted by the model's balancer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Type, Union

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model
from torch import Tensor, nn

from nerfstudio_clipsketch.balance import TermBalancer
from nerfstudio_clipsketch.cameras import get_viewmats, render_size
from nerfstudio_clipsketch.clip_guidance import ClipGuidance
from nerfstudio_clipsketch.hull import VisualHull
from nerfstudio_clipsketch.initialisation import initial_curves
from nerfstudio_clipsketch.learned_curves import SAVED, LearnedCurves
from nerfstudio_clipsketch.lifecycle import Reseed, StrokeLifecycle
from nerfstudio_clipsketch.model_config import ClipSketchModelSettings
from nerfstudio_clipsketch.occlusion import HullOcclusion
from nerfstudio_clipsketch.rendering import render
from nerfstudio_clipsketch.strokes import StrokeStyle, stroke_gaussians, world_per_stroke_pixel
from nerfstudio_clipsketch.symmetry import choose_plane
from nerfstudio_clipsketch.terms import TermContext, TermInputs, build_terms
from nerfstudio_clipsketch.timelapse import TimeLapse
from nerfstudio_clipsketch.viewer import SketchSplines

logger = logging.getLogger(__name__)

IMAGE_OUTPUTS = ("rgb", "accumulation", "depth", "background")  # what the viewer and ns-render are handed


@dataclass
class ClipSketchModelConfig(ClipSketchModelSettings):
    _target: Type = field(default_factory=lambda: ClipSketchModel)


class ClipSketchModel(Model):
    """Bézier control points → Gaussians along the curves → a rendered sketch, compared with each view by CLIP."""

    config: ClipSketchModelConfig

    def populate_modules(self) -> None:
        cfg = self.config
        cfg.check()
        self.generator = torch.Generator().manual_seed(cfg.seed)
        budget = cfg.num_curves * cfg.gaussians_per_curve
        self.curves = LearnedCurves(cfg.num_curves, cfg.curve_degree, budget, self.scene_box.aabb, self.generator)
        per_px = 0.01 * float(self.curves.unit)
        self.style = StrokeStyle(cfg.stroke_width, cfg.stroke_color, cfg.background_color, cfg.stroke_opacity, per_px)
        self.crop_box: Optional[OrientedBox] = None
        self.guidance: Optional[ClipGuidance] = None
        self.train_cameras: Optional[Cameras] = None
        self.occlusion: Optional[HullOcclusion] = None
        self.lifecycle: Optional[StrokeLifecycle] = None
        self.balancer = TermBalancer(build_terms(cfg, TermContext(clip=self._require_guidance)))
        self.init_method = "sphere"
        # The curves as splines in nerfstudio's viewer, and their GUI. The viewer finds ViewerControl and
        # ViewerElement objects among the model's public attributes by itself.
        self.sketch_splines = SketchSplines(
            self.world_control_points, cfg.num_curves, self.style.width, self.style.set_width
        )
        self.viewer_curves_show, self.viewer_curves_width, self.viewer_stroke_width = self.sketch_splines.elements
        self.resample_gaussians()

    def get_extra_state(self) -> Dict[str, str]:
        return {"init": self.init_method}  # saved with checkpoints: exports say how the sketch started

    def set_extra_state(self, state: Dict[str, str]) -> None:
        self.init_method = state.get("init", self.init_method)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        state_dict = {f"curves.{k}" if k in SAVED else k: v for k, v in state_dict.items()}  # older checkpoints
        state_dict.setdefault("curves._extra_state", {"tying": None})
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.resample_gaussians()
        self.sketch_splines.sync()  # the viewer's slider shows the loaded width, not the config's
        return result

    @torch.no_grad()
    def setup_from_data(
        self,
        cameras: Cameras,
        background: Optional[Float[Tensor, "3"]] = None,
        points: Optional[Float[Tensor, "num_points 3"]] = None,
        hull: Optional[VisualHull] = None,
        no_hull_reason: str = "no visual hull was carved",
        uniform_background: bool = False,
        train_cameras: Optional[Cameras] = None,
    ) -> None:
        """Fix what the training data decides: the initial curves, the stroke width in world units, the colours (paper
        white for ``uniform_background``: photos on a uniform backdrop), and the guidance terms, occlusion and
        lifecycle, which are handed the training cameras (``train_cameras``: as training renders them, e.g. scaled
        down; default ``cameras``) and the visual hull once. A checkpoint loaded afterwards overrides the curves."""
        cfg = self.config
        self.train_cameras = (train_cameras if train_cameras is not None else cameras).reshape(-1)
        self.occlusion = HullOcclusion.for_hull(hull, cfg.occlusion)
        context = TermContext(cameras=self.train_cameras.to("cpu"), hull=hull, clip=self._require_guidance)
        self.balancer = TermBalancer(build_terms(cfg, context))
        start = initial_curves(cfg, cameras.camera_to_worlds, self.generator, points, hull, no_hull_reason)
        self.style.fit(world_per_stroke_pixel(start.distance, self.train_cameras), background, uniform_background)
        self.curves.start_from(start, choose_plane(cfg.symmetry, hull, points, start.centre))
        self.init_method = start.method
        if cfg.lifecycle.every > 0:
            size, new_length = hull.diagonal if hull is not None else start.distance, cfg.init_length * start.distance
            self.lifecycle = StrokeLifecycle(
                cfg.lifecycle, self.train_cameras, size, new_length, hull, self.generator, start.centre
            )
        self.resample_gaussians()
        sigma, paper = float(self.style.sigma()), self.style.background.tolist()
        logger.info(f"clipsketch: {len(start.control_points)} {start.method} curves, sigma {sigma:.4g}, paper {paper}")

    @torch.no_grad()
    def restart(self) -> None:
        """Go back to the curves training started from (kept in checkpoints: ``clipsketch-eval --initial``)."""
        self.curves.restart()
        self.resample_gaussians()

    def use_guidance(self, guidance: ClipGuidance) -> None:
        """Compare renders with views through ``guidance`` (built once by the pipeline; tests hand in a tiny one)."""
        self.guidance = guidance

    def _require_guidance(self) -> ClipGuidance:
        if self.guidance is None:
            raise RuntimeError("clipsketch: no CLIP guidance attached (ClipSketchPipeline.ensure_guidance builds it)")
        if self.guidance.device != self.device:
            self.guidance.to(self.device)
        return self.guidance

    @property
    def control_points(self) -> nn.Parameter:
        """The learned tensor (:class:`~nerfstudio_clipsketch.learned_curves.LearnedCurves`)."""
        return self.curves.control_points

    def world_control_points(self) -> Float[Tensor, "num_curves degree_plus_one 3"]:
        """The curves' control points in nerfstudio's (normalised) world frame."""
        return self.curves.world()

    def gaussian_centres(self) -> Float[Tensor, "N 3"]:
        """The Gaussians' centres: the curves' samples."""
        return self.curves.centres()

    def gaussians(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Means ``[N, 3]``, scales ``[N]``, opacities ``[N]`` and colours ``[N, 3]`` of the stroke Gaussians."""
        return stroke_gaussians(self.gaussian_centres(), self.style.sigma(), self.style.opacity, self.style.color)

    def get_outputs(self, camera: Cameras) -> Dict[str, Union[Tensor, List]]:  # type: ignore[override]
        """Render the sketch from one or several cameras: ``rgb``, ``accumulation`` and ``depth``, each ``[V, H, W,
        *]`` (one convention inside the model; :meth:`get_outputs_for_camera` drops ``V`` for nerfstudio), and the
        Gaussians' centres ``means`` as drawn (the guidance terms balanced on them need them)."""
        if not isinstance(camera, Cameras):
            raise TypeError(f"clipsketch renders Cameras, not {type(camera).__name__}")
        cams, (height, width) = camera.flatten() if camera.shape else camera.reshape((1,)), render_size(camera)
        means, scales, opacities, colors = self.gaussians()
        if self.crop_box is not None and not self.training:
            inside = self.crop_box.within(means).squeeze(-1)
            opacities = torch.where(inside, opacities, torch.zeros_like(opacities))
        viewmats, Ks = get_viewmats(cams.camera_to_worlds.to(means)), cams.get_intrinsics_matrices().to(means)
        if self.training and self.occlusion is not None:  # what each camera sees past the object: [V, N]
            opacities = opacities * self.occlusion.transmittance(means, cams.camera_to_worlds[:, :3, 3])
        options = {"eps2d": self.config.eps2d, "backend": self.config.render_backend}
        paper = self.style.background.to(means)
        out = render(means, scales, opacities, colors, viewmats, Ks, width, height, paper, **options)
        depth = out.depth
        if not self.training:
            # Empty pixels are far away, not at the camera, so the viewer's depth compositing shows what lies behind.
            depth = torch.where(out.alpha > 0, depth, depth.detach().max())
        return dict(rgb=out.rgb, accumulation=out.alpha, background=self.style.background, depth=depth, means=means)

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box: Optional[OrientedBox] = None) -> Dict[str, Tensor]:
        """Render full images (viewer, evaluation, ns-render; rasterization needs no ray chunking): ``[H, W, *]`` for
        one camera, as nerfstudio expects, ``[V, H, W, *]`` for several."""
        self.crop_box = obb_box if obb_box is not None else self.crop_box
        outputs = {k: v for k, v in self.get_outputs(camera.to(self.device)).items() if k in IMAGE_OUTPUTS}
        if outputs["rgb"].shape[0] > 1:
            return outputs  # type: ignore[return-value]
        return {k: v if k == "background" else v[0] for k, v in outputs.items()}  # type: ignore[index]

    def get_param_groups(self) -> Dict[str, List[nn.Parameter]]:
        return {"control_points": [self.control_points]}

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        after_step = [TrainingCallbackLocation.AFTER_TRAIN_ITERATION]
        every = max(1, self.config.resample_every)
        callbacks = [TrainingCallback(after_step, self.resample_gaussians, update_every_num_iters=every)]
        if self.config.timelapse_every > 0 and attributes.trainer is not None and self.train_cameras is not None:
            callbacks.extend(TimeLapse.for_model(self, attributes.trainer.base_dir).training_callbacks())
        callbacks.extend(self.sketch_splines.training_callbacks())  # viewer splines, throttled
        if self.lifecycle is not None:
            lifecycle, groups = self.lifecycle, attributes.optimizers.optimizers if attributes.optimizers else {}

            def reseed(step: int) -> None:
                self.apply_reseed(lifecycle.step(step, self.world_control_points()), groups.get("control_points"))

            callbacks.append(TrainingCallback(after_step, reseed, update_every_num_iters=lifecycle.settings.every))
        return callbacks

    @torch.no_grad()
    def apply_reseed(self, reseed: Optional[Reseed], optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """Start the strokes a lifecycle decision names again, with their Adam moments in ``optimizer`` reset."""
        if reseed is not None:
            self.curves.reseed(reseed, optimizer)
            self.resample_gaussians()

    @torch.no_grad()
    def resample_gaussians(self, step: Optional[int] = None) -> None:
        """Re-space the Gaussians evenly in arc length along the moved curves (between steps)."""
        self.curves.resample(self.style.sigma(), step)

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        """Every guidance term's named, weighted losses (:mod:`nerfstudio_clipsketch.terms`): CLIPasso's
        ``clip_layer{i}`` and ``clip_fc``, and those of the terms that are on (``edges``, ``ridges``, ``text``).

        ``outputs["rgb"]`` and ``batch["image"]`` are ``[V, H, W, *]``; ``batch["image_idx"]`` lists the ``V`` training
        views (their target features and edge maps are cached per view)."""
        split = "train" if self.training else "eval"
        inputs = TermInputs(
            rgb=outputs["rgb"],
            ink=outputs["accumulation"],
            target=self.style.composite(batch["image"], batch.get("mask")),
            keys=[(split, int(i)) for i in batch["image_idx"]] if "image_idx" in batch else None,
            ink_colour=self.style.color - self.style.background,
            generator=self.generator,
            training=self.training,
            means=outputs["means"],
            evaluate_centres=self.gaussian_centres,
        )
        return self.balancer.losses(inputs)

    @torch.no_grad()
    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """Target | sketch side by side, and the un-augmented CLIP terms and embedding similarity of the view
        (nerfstudio's evaluation hands one view, ``[H, W, *]``)."""
        guidance = self._require_guidance()
        target, sketch = self.style.composite(batch["image"], batch.get("mask")), outputs["rgb"]
        losses = guidance.loss(sketch[None], target[None], augment=False)
        metrics = {name: float(value) for name, value in losses.items()}
        metrics["clip_similarity"] = float(guidance.similarity(sketch[None], target[None])[0])
        return metrics, {"img": torch.cat([target, sketch], dim=1), "accumulation": outputs["accumulation"]}
