"""The clipsketch model's settings (``--pipeline.model.*``): the strokes, how they start, how training treats them, and
one entry per guidance term (:mod:`nerfstudio_clipsketch.terms`). The config nerfstudio builds the model from,
:class:`~nerfstudio_clipsketch.model.ClipSketchModelConfig`, is these settings with the model as its ``_target``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Dict, Literal

from nerfstudio.models.base_model import ModelConfig

from nerfstudio_clipsketch.clip_guidance import ClipGuidanceConfig
from nerfstudio_clipsketch.lifecycle import LifecycleSettings
from nerfstudio_clipsketch.occlusion import OcclusionSettings
from nerfstudio_clipsketch.segmentation import SegmentationError, parse_region
from nerfstudio_clipsketch.strokes import parse_color
from nerfstudio_clipsketch.symmetry import SymmetryError, parse_option
from nerfstudio_clipsketch.terms.base import GuidanceTermConfig
from nerfstudio_clipsketch.terms.edges import EdgeTermConfig
from nerfstudio_clipsketch.terms.ridges import RidgeTermConfig
from nerfstudio_clipsketch.terms.text import TextTermConfig


class ClipSketchConfigError(ValueError):
    """A clipsketch model setting that cannot be used."""


@dataclass
class ClipSketchModelSettings(ModelConfig):
    """A 3D sketch: Bézier curves drawn as Gaussians, optimised so every view reads like the object to CLIP."""

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
    silhouettes: masks, alpha, a uniform background or the object found in the photos), 'points' (on the
    dataparser's 3D points, e.g. COLMAP's sparse cloud), 'sphere' (random short strokes in a ball around the point
    the cameras look at, the ancestor's) or 'auto' (hull, else points, else sphere: a cluttered capture's sparse
    points lie on the whole room, its hull on the object)."""
    symmetry: str = "off"
    """Mirror symmetry: strokes tied in mirrored pairs across a plane, so only about half the control points are
    learned and the sketch stays symmetric: 'auto' (the plane that best mirrors the visual hull, or the 3D points,
    when it mirrors them to within 1 % of their size; the log says what it found), 'off', 'x', 'y' or 'z' (the plane
    across that axis through the point the cameras look at) or 'nx,ny,nz,d' (the plane nx*x + ny*y + nz*z = d, in
    nerfstudio's normalised frame). Off by default: tied, the built-in house and ABC-NEF improve, but two of three
    family parts measured lose F@0.02 (BENCHMARKS.md)."""
    object_region: str = "auto"
    """Where the object is in photos without masks or a uniform backdrop (e.g. a phone capture on a desk): 'auto'
    (found where the cameras look, or on the capture's sparse points, then segmented in every view with OpenCV's
    GrabCut: nerfstudio_clipsketch.segmentation), 'x,y,z,r' (a ball about x,y,z of radius r in nerfstudio's
    normalised frame, the viewer's coordinates) or 'off' (no segmentation: no visual hull, strokes start on the
    sparse points or in a ball)."""
    hull_resolution: int = 128
    """Voxels across the visual hull's grid (its longest side): finer finds thinner parts, costs cubically more."""
    init_radius: float = 0.3
    """Radius of the 'sphere' initialisation, as a fraction of the median camera distance to the scene centre."""
    init_length: float = 0.1
    """Length of the initial strokes, as a fraction of the median camera distance to the scene centre."""
    clip: ClipGuidanceConfig = field(default_factory=ClipGuidanceConfig)
    """The CLIP encoder every CLIP-based term shares, and CLIPasso's loss weights (nerfstudio_clipsketch.terms.clip:
    always on, the main signal)."""
    edges: EdgeTermConfig = field(default_factory=EdgeTermConfig)
    """The image structure term: ink pulled onto the training views' edges (nerfstudio_clipsketch.terms.edges)."""
    ridges: RidgeTermConfig = field(default_factory=RidgeTermConfig)
    """Training holds the strokes on the visual hull's rims and creases (nerfstudio_clipsketch.terms.ridges)."""
    text: TextTermConfig = field(default_factory=TextTermConfig)
    """A text prompt the sketch should read as, besides the photos (nerfstudio_clipsketch.terms.text)."""
    occlusion: OcclusionSettings = field(default_factory=OcclusionSettings)
    """Training renders fade the ink behind the visual hull (nerfstudio_clipsketch.occlusion)."""
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    """Re-seeding strokes that collapse, leave the views or run along another (nerfstudio_clipsketch.lifecycle)."""
    resample_every: int = 25
    """Re-space the Gaussians evenly along each curve every this many steps (between steps, outside the graph)."""
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

    def terms(self) -> Dict[str, GuidanceTermConfig]:
        """The guidance terms' settings by field name (every field that is a GuidanceTermConfig), in field order."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), GuidanceTermConfig)
        }

    def check(self) -> None:
        """Refuse settings no sketch can use, naming the setting and what is allowed (before anything is built)."""
        problems = [
            (self.num_curves < 1, f"num_curves must be at least 1, got {self.num_curves}"),
            (self.curve_degree < 1, f"curve_degree must be at least 1, got {self.curve_degree}"),
            (self.hull_resolution < 8, f"hull_resolution must be at least 8 voxels, got {self.hull_resolution}"),
            (self.gaussians_per_curve < 2, f"gaussians_per_curve must be at least 2, got {self.gaussians_per_curve}"),
            (not self.stroke_width > 0, f"stroke_width must be positive (pixels), got {self.stroke_width}"),
            (not 0.0 < self.stroke_opacity <= 1.0, f"stroke_opacity must be in (0, 1], got {self.stroke_opacity}"),
            (self.lifecycle.every < 0, f"lifecycle.every must be 0 (off) or a step count, got {self.lifecycle.every}"),
            *self.occlusion.problems(),
            *(problem for name, term in self.terms().items() for problem in term.problems(name)),
        ]
        for bad, message in problems:
            if bad:
                raise ClipSketchConfigError(message)
        try:
            parse_region(self.object_region)
        except SegmentationError as e:
            raise ClipSketchConfigError(str(e)) from e
        try:
            parse_option(self.symmetry)
        except SymmetryError as e:
            raise ClipSketchConfigError(str(e)) from e
        for value, what in ((self.stroke_color, "stroke colour"), (self.background_color, "background colour")):
            try:
                parse_color(value, what)
            except ValueError as e:
                raise ClipSketchConfigError(str(e)) from e
