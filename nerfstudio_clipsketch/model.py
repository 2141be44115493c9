"""The clipsketch model: curve-constrained, fixed-appearance Gaussians guided by CLIP.

Splatfacto learns free Gaussians; here the only learned tensor is the Bézier control points. Gaussian centres are
samples along the curves, and colour, opacity and size come from the stroke style. The loss is CLIPasso's
(:mod:`nerfstudio_clipsketch.clip_guidance`).
"""

from __future__ import annotations

import logging
import re
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
from nerfstudio_clipsketch.initialisation import camera_axes_centre, points_init, sphere_init
from nerfstudio_clipsketch.rendering import render, stroke_sigma
from nerfstudio_clipsketch.timelapse import TimeLapse
from nerfstudio_clipsketch.viewer import SketchSplines

logger = logging.getLogger(__name__)

NAMED_COLORS = {"black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0)}


class ClipSketchConfigError(ValueError):
    """A clipsketch model setting that cannot be used."""


def parse_color(value: str, what: str) -> Optional[Tuple[float, float, float]]:
    """``auto`` → None; ``black``/``white``; ``#rrggbb``; or three floats in [0, 1] like ``0.1,0.2,0.3``."""
    text = value.strip().lower()
    if text == "auto":
        return None
    if text in NAMED_COLORS:
        return NAMED_COLORS[text]
    if re.fullmatch(r"#[0-9a-f]{6}", text):
        return tuple(int(text[i : i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]
    parts = re.split(r"[,\s]+", text)
    try:
        rgb = tuple(float(p) for p in parts)
    except ValueError:
        rgb = ()
    if len(rgb) == 3 and all(0.0 <= c <= 1.0 for c in rgb):
        return rgb  # type: ignore[return-value]
    raise ClipSketchConfigError(
        f"Cannot read {what} {value!r}: use 'auto', 'black', 'white', '#rrggbb' or three numbers in [0, 1] "
        "like '0.1,0.2,0.3'."
    )


@dataclass
class ClipSketchModelConfig(ModelConfig):
    """A 3D sketch: Bézier curves drawn as Gaussians, optimised so every view reads like the object to CLIP."""

    _target: Type = field(default_factory=lambda: ClipSketchModel)
    num_curves: int = 16
    """Number of strokes in the sketch."""
    curve_degree: int = 3
    """Degree of each Bézier curve (3: cubic)."""
    gaussians_per_curve: int = 64
    """Gaussians sampled along each curve, evenly in arc length. Enough that neighbours overlap at the stroke
    width; a warning says when curves grow too long for it."""
    stroke_width: float = 2.0
    """Stroke width in pixels, for a stroke at the scene centre seen from the median training camera at training
    resolution (strokes are 3D, so nearer ones look wider)."""
    stroke_color: str = "auto"
    """Stroke colour: 'auto' (dark on light backgrounds, light on dark), 'black', 'white', '#rrggbb' or 'r,g,b'."""
    stroke_opacity: float = 1.0
    """Peak opacity of the Gaussians that draw the strokes."""
    background_color: str = "auto"
    """Background behind the strokes: 'auto' (from the data), 'black', 'white', '#rrggbb' or 'r,g,b'. Training
    images with alpha are composited on it."""
    init: Literal["auto", "sphere", "points"] = "auto"
    """Initial strokes: 'sphere' (random short strokes in a ball around the point the cameras look at), 'points'
    (on the dataparser's 3D points, e.g. COLMAP's sparse cloud) or 'auto' (points when there are any)."""
    init_radius: float = 0.3
    """Radius of the 'sphere' initialisation, as a fraction of the median camera distance to the scene centre."""
    init_length: float = 0.1
    """Length of the initial strokes, as a fraction of the median camera distance to the scene centre."""
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


class ClipSketchModel(Model):
    """Bézier control points → Gaussians along the curves → a rendered sketch, compared with each view by CLIP."""

    config: ClipSketchModelConfig

    def populate_modules(self) -> None:
        cfg = self.config
        if cfg.num_curves < 1:
            raise ClipSketchConfigError(f"num_curves must be at least 1, got {cfg.num_curves}")
        if cfg.curve_degree < 1:
            raise ClipSketchConfigError(f"curve_degree must be at least 1, got {cfg.curve_degree}")
        if cfg.gaussians_per_curve < 2:
            raise ClipSketchConfigError(f"gaussians_per_curve must be at least 2, got {cfg.gaussians_per_curve}")
        if cfg.stroke_width <= 0:
            raise ClipSketchConfigError(f"stroke_width must be positive (pixels), got {cfg.stroke_width}")
        if not 0.0 < cfg.stroke_opacity <= 1.0:
            raise ClipSketchConfigError(f"stroke_opacity must be in (0, 1], got {cfg.stroke_opacity}")
        self._stroke_override = parse_color(cfg.stroke_color, "stroke colour")
        self._background_override = parse_color(cfg.background_color, "background colour")

        self.generator = torch.Generator().manual_seed(cfg.seed)
        # The learned tensor is scale-free: world = anchor + unit * control_points, with the unit the median camera
        # distance to the scene centre, so one learning rate suits every dataset's scale.
        self.register_buffer("anchor", self.scene_box.get_center().float())
        self.register_buffer("unit", (self.scene_box.aabb[1] - self.scene_box.aabb[0]).max().float())
        self.control_points = nn.Parameter(
            sphere_init(cfg.num_curves, cfg.curve_degree, torch.zeros(3), 0.25, 0.05, self.generator)
        )
        self.register_buffer("t_samples", curves.arc_length_parameters(self.control_points, cfg.gaussians_per_curve))
        # Buffers are persistent: a checkpoint restores the sketch's look exactly, wherever it is loaded.
        self.register_buffer("stroke_scale", stroke_sigma(cfg.stroke_width) * 0.01 * self.unit)
        self.register_buffer("background", torch.tensor(self._background_override or NAMED_COLORS["white"]))
        self.register_buffer("stroke_rgb", self._contrasting_stroke(self.background))
        self.crop_box: Optional[OrientedBox] = None
        self._guidance: Optional[ClipGuidance] = None
        self._warned_dotted = False
        self._setup_viewer_controls()

    # --- viewer (nerfstudio_clipsketch.viewer) ------------------------------------------------------------------------

    def _setup_viewer_controls(self) -> None:
        """The curves as splines in nerfstudio's viewer, and their GUI. The viewer finds ViewerControl and
        ViewerElement objects among the model's public attributes by itself."""
        self.sketch_splines = SketchSplines(self)
        self.viewer_curves_show, self.viewer_curves_width, self.viewer_stroke_width = self.sketch_splines.elements

    # --- end viewer ---------------------------------------------------------------------------------------------------

    # ----------------------------------------------------------------------------------------------------------------
    # Set-up from the training data (called by the pipeline once the datamanager exists)

    def _contrasting_stroke(self, background: Tensor) -> Tensor:
        if self._stroke_override is not None:
            return torch.tensor(self._stroke_override, device=background.device)
        light = (background * torch.tensor([0.299, 0.587, 0.114], device=background.device)).sum() > 0.5
        return torch.where(light, torch.zeros(3, device=background.device), torch.ones(3, device=background.device))

    @torch.no_grad()
    def setup_from_data(
        self,
        cameras: Cameras,
        background: Optional[Float[Tensor, "3"]] = None,
        points: Optional[Float[Tensor, "num_points 3"]] = None,
    ) -> None:
        """Fix what depends on the training cameras: the initial curves, the stroke width in world units, and the
        colours. A checkpoint loaded afterwards overrides all of it."""
        cfg = self.config
        c2w = cameras.camera_to_worlds.reshape(-1, 3, 4).float().cpu()
        centre = camera_axes_centre(c2w)
        distance = float((c2w[:, :3, 3] - centre).norm(dim=-1).median())
        focal = float(cameras.fx.reshape(-1).float().median())
        if self._background_override is not None:
            background = torch.tensor(self._background_override)
        if background is not None:
            self.background.copy_(background.to(self.background))
        self.stroke_rgb.copy_(self._contrasting_stroke(self.background))
        # A stroke w pixels wide at the scene centre from the median camera is w * distance / focal world units.
        self.stroke_scale.fill_(stroke_sigma(cfg.stroke_width) * distance / focal)
        use_points = cfg.init == "points" or (cfg.init == "auto" and points is not None and len(points) > 0)
        if use_points:
            if points is None or len(points) == 0:
                raise ClipSketchConfigError(
                    "init='points' needs 3D points from the dataparser (e.g. a COLMAP capture with sparse points); "
                    "this dataset has none. Use --pipeline.model.init sphere."
                )
            cp = points_init(points, cfg.num_curves, cfg.curve_degree, cfg.init_length * distance, self.generator)
            cp = (cp - centre) / distance
        else:
            cp = sphere_init(cfg.num_curves, cfg.curve_degree, torch.zeros(3), cfg.init_radius, cfg.init_length, self.generator)
        self.anchor.copy_(centre)
        self.unit.fill_(distance)
        self.control_points.data.copy_(cp.to(self.control_points))
        self.t_samples.copy_(curves.arc_length_parameters(self.control_points, cfg.gaussians_per_curve))
        logger.info(
            "clipsketch: %d curves (%s init), stroke sigma %.4g world units, background %s",
            cfg.num_curves,
            "points" if use_points else "sphere",
            float(self.stroke_scale),
            self.background.tolist(),
        )

    def get_guidance(self) -> ClipGuidance:
        """The CLIP guidance, built on first use (renders, exports and the viewer never need it; a method, not a
        property, so that the viewer's walk over the model's attributes does not build it)."""
        if self._guidance is None:
            self._guidance = self.config.clip.setup(device=self.device)
        elif self._guidance.device != self.device:
            self._guidance.to(self.device)
        return self._guidance

    def set_guidance(self, guidance: ClipGuidance) -> None:
        """Use an already built guidance (one CLIP model per process; tests pass a tiny one)."""
        self._guidance = guidance

    # ----------------------------------------------------------------------------------------------------------------
    # Gaussians and rendering

    @property
    def num_gaussians(self) -> int:
        return self.config.num_curves * self.config.gaussians_per_curve

    def world_control_points(self) -> Float[Tensor, "num_curves degree_plus_one 3"]:
        """The curves' control points in nerfstudio's (normalised) world frame."""
        return self.anchor + self.unit * self.control_points

    def gaussians(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Means ``[N, 3]``, scales ``[N]``, opacities ``[N]`` and colours ``[N, 3]`` of the stroke Gaussians."""
        means = curves.evaluate(self.world_control_points(), self.t_samples).reshape(-1, 3)
        n = means.shape[0]
        scales = self.stroke_scale.expand(n)
        opacities = torch.full((n,), self.config.stroke_opacity, device=means.device, dtype=means.dtype)
        colors = self.stroke_rgb.to(means.dtype).expand(n, 3)
        return means, scales, opacities, colors

    def set_crop(self, crop_box: Optional[OrientedBox]) -> None:
        self.crop_box = crop_box

    def get_outputs(self, camera: Cameras) -> Dict[str, Union[Tensor, List]]:  # type: ignore[override]
        """Render the sketch from one camera (``[H, W, *]`` outputs) or several (``[V, H, W, *]``)."""
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
        out = render(
            means,
            scales,
            opacities,
            colors,
            get_viewmats(cams.camera_to_worlds.to(means)),
            cams.get_intrinsics_matrices().to(means),
            width,
            height,
            self.background.to(means),
            eps2d=self.config.eps2d,
            backend=self.config.render_backend,
        )
        depth = out.depth
        if not self.training:
            # Empty pixels are far away, not at the camera, so the viewer's depth compositing shows what lies behind.
            depth = torch.where(out.alpha > 0, depth, depth.detach().max())
        outputs: Dict[str, Union[Tensor, List]] = {"rgb": out.rgb, "accumulation": out.alpha, "depth": depth}
        if len(cams) == 1:
            outputs = {k: v[0] for k, v in outputs.items()}  # type: ignore[index]
        outputs["background"] = self.background
        return outputs

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box: Optional[OrientedBox] = None) -> Dict[str, Tensor]:
        """Render a full image (viewer, evaluation, ns-render): rasterization needs no ray chunking."""
        if obb_box is not None:
            self.set_crop(obb_box)
        return self.get_outputs(camera.to(self.device))  # type: ignore[return-value]

    # ----------------------------------------------------------------------------------------------------------------
    # Training

    def get_param_groups(self) -> Dict[str, List[nn.Parameter]]:
        return {"control_points": [self.control_points]}

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        callbacks = [
            TrainingCallback(
                [TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                self.resample_gaussians,
                update_every_num_iters=max(1, self.config.resample_every),
            )
        ]
        timelapse = self._make_timelapse(training_callback_attributes)
        if timelapse is not None:
            callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], timelapse.snapshot))
        callbacks.extend(self.sketch_splines.training_callbacks())  # viewer splines, throttled
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
        trainer = attributes.trainer
        last_step = trainer._start_step + trainer.config.max_num_iterations - 1
        camera = cameras[cfg.timelapse_view : cfg.timelapse_view + 1]
        return TimeLapse(self, camera, trainer.base_dir, cfg.timelapse_every, last_step, cfg.timelapse_format)

    @torch.no_grad()
    def resample_gaussians(self, step: int) -> None:
        """Re-space the Gaussians evenly in arc length along the moved curves (between steps: free to sync), and say
        once if a curve has grown so long that its Gaussians no longer overlap (the stroke would look dotted)."""
        self.t_samples.copy_(curves.arc_length_parameters(self.control_points, self.config.gaussians_per_curve))
        spacing = self.unit * curves.curve_lengths(self.control_points).max() / (self.config.gaussians_per_curve - 1)
        if not self._warned_dotted and bool(spacing > 2.0 * self.stroke_scale):
            self._warned_dotted = True
            needed = int(torch.ceil(spacing / self.stroke_scale * (self.config.gaussians_per_curve - 1) / 2.0)) + 1
            CONSOLE.log(
                f"[yellow]clipsketch: at step {step} the longest curve's Gaussians are {float(spacing):.3g} apart, "
                f"more than twice their size ({float(self.stroke_scale):.3g}): its stroke looks dotted. "
                f"Use --pipeline.model.gaussians-per-curve {needed} or more."
            )

    def target_image(self, image: Tensor) -> Tensor:
        """A training image as RGB in [0, 1], composited over the sketch's background where it has alpha."""
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        image = image.to(self.device)
        if image.shape[-1] == 4:
            alpha = image[..., 3:4]
            image = image[..., :3] * alpha + self.background * (1.0 - alpha)
        return image

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        return {}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        """CLIPasso's terms, each weighted: ``clip_layer{i}`` (L2 on activations) and ``clip_fc`` (cosine)."""
        sketch = outputs["rgb"]
        target = self.target_image(batch["image"])
        if sketch.dim() == 3:
            sketch, target = sketch[None], target[None]
        indices = batch.get("image_idx")
        if indices is None:
            keys = None
        else:
            split = "train" if self.training else "eval"
            indices = indices if isinstance(indices, (list, tuple)) else [indices]
            keys = [(split, int(i)) for i in indices]
        return self.get_guidance().loss(sketch, target, generator=self.generator, target_keys=keys, augment=self.training)

    @torch.no_grad()
    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """Target | sketch side by side, and the un-augmented CLIP terms and embedding similarity of the view."""
        target = self.target_image(batch["image"])
        sketch = outputs["rgb"]
        losses = self.get_guidance().loss(sketch[None], target[None], augment=False)
        metrics = {name: float(value) for name, value in losses.items()}
        metrics["clip_similarity"] = float(self.get_guidance().similarity(sketch[None], target[None])[0])
        return metrics, {"img": torch.cat([target, sketch], dim=1), "accumulation": outputs["accumulation"]}
