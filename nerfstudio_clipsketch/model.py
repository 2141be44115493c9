"""The clipsketch model: curve-constrained, fixed-appearance Gaussians guided by CLIP.

Splatfacto learns free Gaussians; here the only learned tensor is the Bézier control points. Gaussian centres are
samples along the curves, and colour, opacity and size come from the stroke style. The loss is CLIPasso's
(:mod:`nerfstudio_clipsketch.clip_guidance`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type, Union

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor, nn

from nerfstudio_clipsketch import curves
from nerfstudio_clipsketch.cameras import get_viewmats
from nerfstudio_clipsketch.clip_guidance import ClipGuidance, ClipGuidanceConfig
from nerfstudio_clipsketch.edges import EdgeGuidance
from nerfstudio_clipsketch.hull import VisualHull
from nerfstudio_clipsketch.initialisation import InitialisationError, initial_curves, sphere_init
from nerfstudio_clipsketch.lifecycle import LifecycleSettings, StrokeLifecycle
from nerfstudio_clipsketch.occlusion import HullOcclusion, OcclusionSettings
from nerfstudio_clipsketch.rendering import render
from nerfstudio_clipsketch.ridges import RidgeGuidance, RidgeSettings
from nerfstudio_clipsketch.strokes import StrokeStyle, parse_color, stroke_gaussians, world_per_stroke_pixel
from nerfstudio_clipsketch.timelapse import TimeLapse
from nerfstudio_clipsketch.viewer import SketchSplines

logger = logging.getLogger(__name__)

DOTTED_SPACING = 1.5
"""Gaussians further apart than this many standard deviations leave visible gaps in a stroke."""


class ClipSketchConfigError(ValueError):
    """A clipsketch model setting that cannot be used."""


@dataclass
class ClipSketchModelConfig(ModelConfig):
    """A 3D sketch: Bézier curves drawn as Gaussians, optimised so every view reads like the object to CLIP."""

    _target: Type = field(default_factory=lambda: ClipSketchModel)
    num_curves: int = 16
    """Number of strokes in the sketch."""
    curve_degree: int = 3
    """Degree of each Bézier curve (3: cubic)."""
    gaussians_per_curve: int = 128
    """Gaussians per curve on average: the sketch has num_curves times this many, shared among the curves in
    proportion to their lengths and spaced evenly in arc length (re-spaced every resample_every steps), so that
    strokes stay solid however long a curve grows. A warning says when the sketch outgrows them."""
    stroke_width: float = 2.0
    """Stroke width in pixels of a 224-pixel view (the shorter image side; CLIP's input size), for a stroke at the
    scene centre seen from the median training camera: the same share of the view whatever the photos' resolution
    (strokes are 3D, so nearer ones look wider)."""
    stroke_color: str = "auto"
    """Stroke colour: 'auto' (dark on light paper, light on dark), 'black', 'white', '#rrggbb' or 'r,g,b'."""
    stroke_opacity: float = 1.0
    """Peak opacity of the Gaussians that draw the strokes."""
    background_color: str = "auto"
    """The paper behind the strokes: 'auto' (white if the photos show the object on a uniform backdrop, which is then
    repainted white, as CLIPasso does; else the photos' own), 'black', 'white', '#rrggbb' or 'r,g,b'."""
    init: Literal["auto", "hull", "sphere", "points"] = "auto"
    """Initial strokes: 'hull' (traced along the rims and creases of the visual hull carved from the training
    silhouettes; needs an object on a uniform background), 'points' (on the dataparser's 3D points, e.g. COLMAP's
    sparse cloud), 'sphere' (random short strokes in a ball around the point the cameras look at, the ancestor's) or
    'auto' (points, else hull, else sphere)."""
    hull_resolution: int = 128
    """Voxels across the visual hull's grid (its longest side): finer finds thinner parts, costs cubically more."""
    init_radius: float = 0.3
    """Radius of the 'sphere' initialisation, as a fraction of the median camera distance to the scene centre."""
    init_length: float = 0.1
    """Length of the initial strokes, as a fraction of the median camera distance to the scene centre."""
    edge_weight: float = 0.5
    """Strength of the structure term that pulls ink onto the training views' edges, relative to CLIP's terms: its
    gradient is kept at this fraction of theirs (nerfstudio_clipsketch.edges). 0 leaves CLIP alone."""
    ridges: RidgeSettings = field(default_factory=RidgeSettings)
    """Training holds the strokes on the visual hull's rims and creases (nerfstudio_clipsketch.ridges)."""
    occlusion: OcclusionSettings = field(default_factory=OcclusionSettings)
    """Training renders fade the ink behind the visual hull (nerfstudio_clipsketch.occlusion)."""
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    """Re-seeding strokes that collapse, leave the views or run along another (nerfstudio_clipsketch.lifecycle)."""
    resample_every: int = 25
    """Re-space the Gaussians evenly along each curve every this many steps (between steps, outside the graph)."""
    clip: ClipGuidanceConfig = field(default_factory=ClipGuidanceConfig)
    """The CLIP encoder and CLIPasso loss weights."""
    render_backend: Literal["auto", "gsplat", "torch"] = "auto"
    """Rasterizer: gsplat on CUDA, the pure-PyTorch one elsewhere ('auto'), or forced."""
    eps2d: float = 0.3
    """Low-pass filter added to each projected Gaussian's covariance, in pixels squared (gsplat's eps2d)."""
    seed: int = 42
    """Seed of the initial curves and of the CLIP augmentations."""
    timelapse_every: int = 0
    """Snapshot the sketch from a fixed training view every this many steps and write an animation when training
    ends (0: off)."""
    timelapse_view: int = 0
    """Index of the training camera the time-lapse is seen from."""
    timelapse_format: Literal["gif", "mp4"] = "gif"
    """Time-lapse file format (mp4 needs an ffmpeg binary)."""
    enable_collider: bool = False
    """Unused by rasterization (kept off, as in splatfacto)."""

    def check(self) -> None:
        """Refuse settings no sketch can use, naming the setting and what is allowed (before anything is built)."""
        problems = [
            (self.num_curves < 1, f"num_curves must be at least 1, got {self.num_curves}"),
            (self.curve_degree < 1, f"curve_degree must be at least 1, got {self.curve_degree}"),
            (self.hull_resolution < 8, f"hull_resolution must be at least 8 voxels, got {self.hull_resolution}"),
            (self.gaussians_per_curve < 2, f"gaussians_per_curve must be at least 2, got {self.gaussians_per_curve}"),
            (not self.stroke_width > 0, f"stroke_width must be positive (pixels), got {self.stroke_width}"),
            (not 0.0 < self.stroke_opacity <= 1.0, f"stroke_opacity must be in (0, 1], got {self.stroke_opacity}"),
            (not self.edge_weight >= 0, f"edge_weight must be 0 (off) or positive, got {self.edge_weight}"),
            (self.lifecycle.every < 0, f"lifecycle.every must be 0 (off) or a step count, got {self.lifecycle.every}"),
            *self.occlusion.problems(),
            *self.ridges.problems(),
        ]
        for bad, message in problems:
            if bad:
                raise ClipSketchConfigError(message)
        for value, what in ((self.stroke_color, "stroke colour"), (self.background_color, "background colour")):
            try:
                parse_color(value, what)
            except ValueError as e:
                raise ClipSketchConfigError(str(e)) from e


class ClipSketchModel(Model):
    """Bézier control points → Gaussians along the curves → a rendered sketch, compared with each view by CLIP."""

    config: ClipSketchModelConfig

    def populate_modules(self) -> None:
        cfg = self.config
        cfg.check()

        self.generator = torch.Generator().manual_seed(cfg.seed)
        # The learned tensor is scale-free: world = anchor + unit * control_points, with the unit the median camera
        # distance to the scene centre, so one learning rate suits every dataset's scale.
        self.register_buffer("anchor", self.scene_box.get_center().float())
        self.register_buffer("unit", (self.scene_box.aabb[1] - self.scene_box.aabb[0]).max().float())
        self.control_points = nn.Parameter(
            sphere_init(cfg.num_curves, cfg.curve_degree, torch.zeros(3), 0.25, 0.05, self.generator)
        )
        self.register_buffer("initial_control_points", self.control_points.detach().clone())  # saved: the start
        # Where the Gaussians sit: sample k is curve sample_curve[k] at parameter sample_t[k]. Derived from the curves
        # between steps (resample_gaussians), so not saved: a checkpoint's sketch is re-spaced when loaded.
        budget = cfg.num_curves * cfg.gaussians_per_curve
        self.register_buffer("sample_curve", torch.zeros(budget, dtype=torch.long), persistent=False)
        self.register_buffer("sample_t", torch.zeros(budget), persistent=False)
        self.style = StrokeStyle(
            cfg.stroke_width, cfg.stroke_color, cfg.background_color, cfg.stroke_opacity, 0.01 * float(self.unit)
        )
        self.crop_box: Optional[OrientedBox] = None
        self.guidance: Optional[ClipGuidance] = None
        self.edges = EdgeGuidance(cfg.edge_weight)
        self.hull: Optional[VisualHull] = None
        self.occlusion: Optional[HullOcclusion] = None
        self.ridges: Optional[RidgeGuidance] = None
        self.init_method = "sphere"
        self._warned_dotted = False
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
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.resample_gaussians()
        self.sketch_splines.sync()  # the viewer's slider shows the loaded width, not the config's
        return result

    # ----------------------------------------------------------------------------------------------------------------
    # Set-up from the training data (called by the pipeline once the datamanager exists)

    @torch.no_grad()
    def setup_from_data(
        self,
        cameras: Cameras,
        background: Optional[Float[Tensor, "3"]] = None,
        points: Optional[Float[Tensor, "num_points 3"]] = None,
        hull: Optional[VisualHull] = None,
        no_hull_reason: str = "no visual hull was carved", uniform_background: bool = False,
    ) -> None:  # fmt: skip
        """Fix what the training data decides (``uniform_background``: photos on a uniform backdrop): the initial
        curves, the stroke width in world units, the colours. A checkpoint loaded afterwards overrides them."""
        cfg = self.config
        self.hull, hides = hull, hull is not None and cfg.occlusion.density > 0
        self.occlusion = HullOcclusion(hull, cfg.occlusion.density, cfg.occlusion.margin) if hides else None
        self.ridges = RidgeGuidance.for_hull(hull, cfg.ridges)
        try:
            start = initial_curves(
                cfg.init, cameras.camera_to_worlds, cfg.num_curves, cfg.curve_degree, cfg.init_radius,
                cfg.init_length, self.generator, points, hull, no_hull_reason,
            )
        except InitialisationError as e:
            raise ClipSketchConfigError(str(e)) from e
        focal = float(cameras.fx.reshape(-1).float().median())
        short_side = float(torch.minimum(cameras.width, cameras.height).reshape(-1).float().median())
        self.style.fit(world_per_stroke_pixel(start.distance, focal, short_side), background, uniform_background)
        self.anchor.copy_(start.centre)
        self.unit.fill_(start.distance)
        self.control_points.data.copy_(start.control_points.to(self.control_points))
        self.initial_control_points.copy_(self.control_points.detach())
        self.init_method = start.method
        self.resample_gaussians()
        logger.info("clipsketch: %d curves (%s init), stroke sigma %.4g world units, background %s", cfg.num_curves,
                    start.method, float(self.style.sigma()), self.style.background.tolist())  # fmt: skip

    @torch.no_grad()
    def restart(self) -> None:
        """Go back to the curves training started from (kept in checkpoints: ``clipsketch-eval --initial``)."""
        self.control_points.copy_(self.initial_control_points)
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

    # ----------------------------------------------------------------------------------------------------------------
    # Gaussians and rendering

    @property
    def num_gaussians(self) -> int:
        return self.control_points.shape[0] * self.config.gaussians_per_curve

    def world_control_points(self) -> Float[Tensor, "num_curves degree_plus_one 3"]:
        """The curves' control points in nerfstudio's (normalised) world frame."""
        return self.anchor + self.unit * self.control_points

    def gaussians(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Means ``[N, 3]``, scales ``[N]``, opacities ``[N]`` and colours ``[N, 3]`` of the stroke Gaussians."""
        means = curves.evaluate_at(self.world_control_points(), self.sample_curve, self.sample_t)
        return stroke_gaussians(means, self.style.sigma(), self.style.opacity, self.style.color)

    def set_crop(self, crop_box: Optional[OrientedBox]) -> None:
        self.crop_box = crop_box

    def get_outputs(self, camera: Cameras) -> Dict[str, Union[Tensor, List]]:  # type: ignore[override]
        """Render the sketch from one or several cameras: ``rgb``, ``accumulation`` and ``depth``, each
        ``[V, H, W, *]`` (one convention inside the model; :meth:`get_outputs_for_camera` drops ``V`` for
        nerfstudio)."""
        if not isinstance(camera, Cameras):
            raise TypeError(f"clipsketch renders Cameras, not {type(camera).__name__}")
        cams = camera.flatten() if camera.shape else camera.reshape((1,))
        size = (camera.metadata or {}).get("image_size")
        if size is not None:  # given as ints by the datamanager: no device-to-host copy in the training step
            height, width = size
        else:
            width, height = int(cams.width[0, 0]), int(cams.height[0, 0])
            if len(cams) > 1 and not (bool((cams.width == width).all()) and bool((cams.height == height).all())):
                raise ValueError("All cameras rendered together must share one resolution")
        means, scales, opacities, colors = self.gaussians()
        if self.crop_box is not None and not self.training:
            inside = self.crop_box.within(means).squeeze(-1)
            opacities = torch.where(inside, opacities, torch.zeros_like(opacities))
        viewmats, Ks = get_viewmats(cams.camera_to_worlds.to(means)), cams.get_intrinsics_matrices().to(means)
        background = self.style.background.to(means)
        if self.training and self.occlusion is not None:  # what each camera sees past the object: [V, N]
            opacities = opacities * self.occlusion.transmittance(means, cams.camera_to_worlds[:, :3, 3])
        out = render(means, scales, opacities, colors, viewmats, Ks, width, height, background,
                     eps2d=self.config.eps2d, backend=self.config.render_backend)  # fmt: skip
        depth = out.depth
        if not self.training:
            # Empty pixels are far away, not at the camera, so the viewer's depth compositing shows what lies behind.
            depth = torch.where(out.alpha > 0, depth, depth.detach().max())
        outputs = {"rgb": out.rgb, "accumulation": out.alpha, "background": self.style.background, "depth": depth}
        return {**outputs, "means": means} if self.training else outputs  # the ridge term balances against them

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box: Optional[OrientedBox] = None) -> Dict[str, Tensor]:
        """Render full images (viewer, evaluation, ns-render; rasterization needs no ray chunking): ``[H, W, *]`` for
        one camera, as nerfstudio expects, ``[V, H, W, *]`` for several."""
        if obb_box is not None:
            self.set_crop(obb_box)
        outputs = self.get_outputs(camera.to(self.device))
        if outputs["rgb"].shape[0] > 1:
            return outputs  # type: ignore[return-value]
        return {k: v if k == "background" else v[0] for k, v in outputs.items()}  # type: ignore[index]

    # ----------------------------------------------------------------------------------------------------------------
    # Training

    def get_param_groups(self) -> Dict[str, List[nn.Parameter]]:
        return {"control_points": [self.control_points]}

    def get_training_callbacks(self, attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        every = max(1, self.config.resample_every)
        after_step = [TrainingCallbackLocation.AFTER_TRAIN_ITERATION]
        callbacks = [TrainingCallback(after_step, self.resample_gaussians, update_every_num_iters=every)]
        timelapse = self._make_timelapse(attributes)
        if timelapse is not None:
            callbacks.extend(timelapse.training_callbacks())
        callbacks.extend(self.sketch_splines.training_callbacks())  # viewer splines, throttled
        if self.config.lifecycle.every > 0 and attributes.pipeline is not None:
            lifecycle = StrokeLifecycle.for_model(self, attributes.pipeline.datamanager.train_dataset.cameras)
            callbacks.extend(lifecycle.training_callbacks(self, attributes.optimizers))
        return callbacks

    def _make_timelapse(self, attributes: TrainingCallbackAttributes) -> Optional[TimeLapse]:
        cfg = self.config
        if cfg.timelapse_every <= 0 or attributes.trainer is None or attributes.pipeline is None:
            return None
        cameras = attributes.pipeline.datamanager.train_dataset.cameras
        if not 0 <= cfg.timelapse_view < len(cameras):
            raise ClipSketchConfigError(
                f"timelapse_view {cfg.timelapse_view} is not a training camera index (0 to {len(cameras) - 1})"
            )
        camera = cameras[cfg.timelapse_view : cfg.timelapse_view + 1]
        render = lambda: self.render_view(camera)  # noqa: E731
        return TimeLapse(render, attributes.trainer.base_dir, cfg.timelapse_every, cfg.timelapse_format)

    @torch.no_grad()
    def render_view(self, camera: Cameras) -> Tensor:
        """One camera's image ``[H, W, 3]`` as the viewer sees it (evaluation mode), between training steps."""
        was_training = self.training
        self.eval()
        try:
            return self.get_outputs_for_camera(camera)["rgb"]
        finally:
            self.train(was_training)

    @torch.no_grad()
    def resample_gaussians(self, step: Optional[int] = None) -> None:
        """Share the Gaussians among the curves by length and re-space them evenly in arc length along the moved
        curves (between steps: free to sync), and say once if the sketch has grown so long that neighbouring
        Gaussians no longer overlap (its strokes would look dotted)."""
        world = self.world_control_points()
        lengths = curves.curve_lengths(world)
        counts = curves.allocate_samples(lengths, self.num_gaussians).to(world.device)
        # Reassigning registered buffers keeps them buffers, also when the number of curves changed.
        self.sample_curve, self.sample_t = curves.arc_length_samples(world, counts)
        sigma = self.style.sigma()
        spacing = (lengths / (counts - 1)).max()
        if step is not None and not self._warned_dotted and bool(spacing > DOTTED_SPACING * sigma):
            self._warned_dotted = True
            needed = int(lengths.sum() / (sigma * self.config.num_curves)) + 2
            CONSOLE.log(f"[yellow]clipsketch: at step {step} the sketch's Gaussians are up to {float(spacing):.3g} "
                        f"apart, more than {DOTTED_SPACING:g} times their size ({float(sigma):.3g}): the sketch looks "
                        f"dotted. Use --pipeline.model.gaussians-per-curve {needed} or more.")  # fmt: skip

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        """CLIPasso's terms, each weighted: ``clip_layer{i}`` (L2 on activations) and ``clip_fc`` (cosine), and the
        structure terms ``edges`` (:mod:`nerfstudio_clipsketch.edges`) and ``ridges`` (training only, with a visual
        hull: :mod:`nerfstudio_clipsketch.ridges`).

        ``outputs["rgb"]`` and ``batch["image"]`` are ``[V, H, W, *]``; ``batch["image_idx"]`` lists the ``V`` training
        views (their target features are cached per view)."""
        split = "train" if self.training else "eval"
        keys = [(split, int(i)) for i in batch["image_idx"]] if "image_idx" in batch else None
        target = self.style.composite(batch["image"])
        losses = self._require_guidance().loss(
            outputs["rgb"], target, generator=self.generator, target_keys=keys, augment=self.training
        )
        if self.config.edge_weight > 0:
            ink_colour, with_clip = self.style.color - self.style.background, bool(losses)
            losses["edges"] = self.edges.balanced_loss(outputs["rgb"], outputs["accumulation"], target, keys,
                                                       ink_colour, with_clip)  # fmt: skip
        if self.training and self.ridges is not None and "means" in outputs:
            losses["ridges"] = self.ridges.loss(self.gaussians()[0], outputs["means"])
        return losses

    @torch.no_grad()
    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """Target | sketch side by side, and the un-augmented CLIP terms and embedding similarity of the view
        (nerfstudio's evaluation hands one view, ``[H, W, *]``)."""
        guidance = self._require_guidance()
        target = self.style.composite(batch["image"])
        sketch = outputs["rgb"]
        losses = guidance.loss(sketch[None], target[None], augment=False)
        metrics = {name: float(value) for name, value in losses.items()}
        metrics["clip_similarity"] = float(guidance.similarity(sketch[None], target[None])[0])
        return metrics, {"img": torch.cat([target, sketch], dim=1), "accumulation": outputs["accumulation"]}
