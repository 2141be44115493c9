"""A sketch: Bézier curves, the style its strokes are drawn in (:mod:`nerfstudio_clipsketch.strokes`), and the one
JSON format it is saved in.

Frames
------
A sketch is optimised in nerfstudio's *normalised* frame, into which the dataparser moved the dataset:
``x' = scale * (R x + t)`` with ``transform = [R | t]`` (3x4) and ``scale`` (see :mod:`nerfstudio_clipsketch.cameras`).
Renders and SVGs use the normalised frame, because the training cameras live there. Geometry meant for other tools
(PLY, OBJ) is written in *dataset* coordinates, the frame of the original capture (for example COLMAP's), so that
it lines up with the capture's own point cloud or mesh. Since the map is a similarity and Bézier curves are affine
invariant, the dataset-frame curve has the dataset-frame control points, and a stroke ``w`` wide in the normalised
frame is ``w / scale`` wide in the dataset frame.

The sketch JSON format (version 1)
----------------------------------
One UTF-8 JSON object::

    {
      "format": "clipsketch-sketch",        # always this string
      "version": 1,                          # bumped on any incompatible change
      "degree": 3,                           # Bézier degree n; every curve has n + 1 control points
      "num_curves": 64,
      "control_points": [[[x, y, z], ...], ...],          # [num_curves][n + 1][3], normalised frame
      "control_points_dataset": [[[x, y, z], ...], ...],  # the same points in dataset coordinates
      "dataparser_transform": [[r, r, r, t], [...], [...]],  # 3x4 [R | t], dataset -> normalised
      "dataparser_scale": 0.25,              # x' = scale * (R x + t)
      "stroke": {
        "width": 0.01,                       # full width at half opacity, normalised world units
        "width_dataset": 0.04,               # width / scale, dataset units
        "color": [0.0, 0.0, 0.0],            # RGB in [0, 1]
        "opacity": 1.0                       # peak opacity of each Gaussian, in [0, 1]
      },
      "background": [1.0, 1.0, 1.0],         # RGB in [0, 1]
      "metadata": {"init": "hull"}           # optional, free-form: how the sketch was made, curve names, ...
    }

Numbers are written with Python's shortest round-tripping ``repr``, so float32 and float64 values reload bit for
bit. :meth:`Sketch.from_json` reads ``control_points`` (the normalised ones, which are what renders);
``control_points_dataset`` and ``width_dataset`` are derived, written for tools that want the capture's frame.
Files of the older ground-truth format ``nerfstudio-clipsketch-curves`` (dataset coordinates, a world ``stroke_width``)
still load, with a deprecation warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_clipsketch.cameras import to_dataset_coordinates
from nerfstudio_clipsketch.curves import sample_curves
from nerfstudio_clipsketch.strokes import check_rgb, stroke_gaussians, stroke_sigma

logger = logging.getLogger(__name__)

FORMAT_NAME = "clipsketch-sketch"
FORMAT_VERSION = 1
LEGACY_CURVES_FORMAT = "nerfstudio-clipsketch-curves"
"""The built-in scene's ground-truth format before version 1 of the sketch format (dataset coordinates)."""

PathLike = Union[str, os.PathLike]
Frame = Literal["dataset", "normalised"]


class SketchFormatError(ValueError):
    """A sketch JSON file that is not in the format this module writes (wrong tag, version or fields)."""


# ----------------------------------------------------------------------------------------------------------------------
# The sketch


@dataclass(eq=False)
class Sketch:
    """A trained sketch: Bézier control points in nerfstudio's normalised frame, its stroke style, and the
    dataparser transform that relates that frame to the dataset's.

    Fields are validated and normalised on construction (tensors, floats, RGB tuples); ``==`` is identity, since
    the fields hold tensors."""

    control_points: Float[Tensor, "num_curves degree_plus_one 3"]
    """Control points in nerfstudio's normalised frame (NumPy arrays are converted to tensors)."""
    degree: int
    """Bézier degree; ``control_points.shape[1] == degree + 1``."""
    stroke_width: float
    """Full width of a stroke at half opacity, in normalised world units."""
    stroke_color: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """RGB stroke colour in [0, 1]."""
    opacity: float = 1.0
    """Peak opacity of each stroke Gaussian, in [0, 1]."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """RGB background colour in [0, 1]."""
    dataparser_transform: Float[Tensor, "3 4"] = field(default_factory=lambda: torch.eye(3, 4))
    """``[R | t]`` of the dataparser's ``x' = scale * (R x + t)``, dataset frame to normalised frame."""
    dataparser_scale: float = 1.0
    """``scale`` of the dataparser's ``x' = scale * (R x + t)``."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form JSON-serialisable facts about the sketch (how it was initialised, curve names, ...)."""

    def __post_init__(self) -> None:
        self.control_points = torch.as_tensor(self.control_points)
        if not self.control_points.is_floating_point():
            self.control_points = self.control_points.float()
        self.dataparser_transform = torch.as_tensor(self.dataparser_transform, dtype=self.control_points.dtype)
        if isinstance(self.degree, bool) or int(self.degree) != self.degree or self.degree < 1:
            raise ValueError(f"Bézier degree must be an integer of at least 1, got {self.degree!r}")
        self.degree = int(self.degree)
        cp = self.control_points
        if cp.dim() != 3 or cp.shape[1:] != (self.degree + 1, 3):
            raise ValueError(
                f"control_points must have shape [num_curves, {self.degree + 1}, 3] for degree {self.degree}, "
                f"got {tuple(cp.shape)}"
            )
        if not bool(torch.isfinite(cp).all()):
            raise ValueError("control_points contain NaN or infinite values")
        if self.dataparser_transform.shape != (3, 4):
            raise ValueError(f"dataparser_transform must be 3x4, got shape {tuple(self.dataparser_transform.shape)}")
        self.stroke_width = _positive(self.stroke_width, "stroke_width")
        self.dataparser_scale = _positive(self.dataparser_scale, "dataparser_scale")
        self.opacity = float(self.opacity)
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"opacity must be in [0, 1], got {self.opacity!r}")
        self.stroke_color = check_rgb(self.stroke_color, "stroke_color")
        self.background = check_rgb(self.background, "background")
        self.metadata = dict(self.metadata)

    @property
    def num_curves(self) -> int:
        """Number of curves."""
        return int(self.control_points.shape[0])

    @property
    def stroke_width_dataset(self) -> float:
        """Stroke width in dataset units: ``stroke_width / dataparser_scale``."""
        return self.stroke_width / self.dataparser_scale

    @property
    def control_points_dataset(self) -> Float[Tensor, "num_curves degree_plus_one 3"]:
        """Control points in the dataset's frame."""
        return to_dataset_coordinates(self.control_points, self.dataparser_transform, self.dataparser_scale)

    def polylines(self, samples_per_curve: int = 100, frame: Frame = "dataset") -> Float[Tensor, "num_curves S 3"]:
        """Each curve sampled at ``samples_per_curve`` points evenly spaced in arc length, ends included, in the
        dataset's frame (PLY/OBJ) or the normalised one (projecting into training cameras)."""
        if frame not in ("dataset", "normalised"):
            raise ValueError(f"Unknown frame {frame!r}; expected 'dataset' or 'normalised'")
        cp = self.control_points.detach() if frame == "normalised" else self.control_points_dataset.detach()
        return sample_curves(cp, samples_per_curve).reshape(self.num_curves, samples_per_curve, 3)

    def gaussians(self, samples_per_curve: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The Gaussians that draw the sketch in the normalised frame, as a model places them: ``num_curves *
        samples_per_curve`` in all, shared among the curves by length and spaced evenly in arc length:
        ``(means [N, 3], scales [N], opacities [N], colors [N, 3])``, grouped by curve."""
        means = sample_curves(self.control_points.detach(), samples_per_curve, by_length=True)
        return stroke_gaussians(means, stroke_sigma(self.stroke_width), self.opacity, self.stroke_color)

    def to_json(self, path: PathLike) -> None:
        """Write the sketch in the versioned JSON format described in this module's docstring."""
        data = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "degree": self.degree,
            "num_curves": self.num_curves,
            "control_points": self.control_points.detach().cpu().tolist(),
            "control_points_dataset": self.control_points_dataset.detach().cpu().tolist(),
            "dataparser_transform": self.dataparser_transform.detach().cpu().tolist(),
            "dataparser_scale": self.dataparser_scale,
            "stroke": {
                "width": self.stroke_width,
                "width_dataset": self.stroke_width_dataset,
                "color": list(self.stroke_color),
                "opacity": self.opacity,
            },
            "background": list(self.background),
            "metadata": self.metadata,
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def from_json(
        cls, path: PathLike, dtype: torch.dtype = torch.float32, device: Optional[Union[torch.device, str]] = None
    ) -> Sketch:
        """Read a sketch written by :meth:`to_json` (or a legacy ground-truth curves file); control points come back
        as ``dtype`` on ``device``.

        Raises:
            SketchFormatError: the file is missing, not JSON, not a ``clipsketch-sketch``, of another version, or a
                field is missing or malformed.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise SketchFormatError(f"Cannot read sketch file {path}: {e}") from e
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SketchFormatError(f"{path} is not valid JSON: {e}") from e
        if isinstance(data, dict) and data.get("format") == LEGACY_CURVES_FORMAT:
            return _from_legacy_curves(data, path, dtype, device)
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise SketchFormatError(f"{path} is not a {FORMAT_NAME!r} file (format: {found!r})")
        if data.get("version") != FORMAT_VERSION:
            raise SketchFormatError(
                f"{path} has {FORMAT_NAME} version {data.get('version')!r}; this reader understands version "
                f"{FORMAT_VERSION}"
            )
        try:
            stroke = data["stroke"]
            sketch = cls(
                control_points=_control_points(data, dtype, device),
                degree=data["degree"],
                stroke_width=stroke["width"],
                stroke_color=tuple(stroke["color"]),
                opacity=stroke["opacity"],
                background=tuple(data["background"]),
                dataparser_transform=torch.tensor(data["dataparser_transform"], dtype=dtype, device=device),
                dataparser_scale=data["dataparser_scale"],
                metadata=data.get("metadata", {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SketchFormatError(f"{path}: malformed {FORMAT_NAME} file: {e!r}") from e
        if sketch.num_curves != data.get("num_curves", sketch.num_curves):
            raise SketchFormatError(
                f"{path}: num_curves is {data['num_curves']!r} but there are {sketch.num_curves} curves"
            )
        return sketch


def _positive(value: Any, name: str) -> float:
    value = float(value)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _control_points(data: dict, dtype: torch.dtype, device) -> Tensor:
    control_points = torch.tensor(data["control_points"], dtype=dtype, device=device)
    if control_points.numel() == 0:
        control_points = control_points.reshape(0, int(data["degree"]) + 1, 3)
    return control_points


def _from_legacy_curves(data: dict, path: Path, dtype: torch.dtype, device) -> Sketch:
    """A ground-truth file of the pre-version-1 format: dataset coordinates, identity transform."""
    logger.warning("%s uses the deprecated %r format; write it again as %r.", path, LEGACY_CURVES_FORMAT, FORMAT_NAME)
    try:
        return Sketch(
            control_points=_control_points(data, dtype, device),
            degree=data["degree"],
            stroke_width=data["stroke_width"],
            stroke_color=tuple(data.get("stroke_color", (0.0, 0.0, 0.0))),
            background=tuple(data.get("background", (1.0, 1.0, 1.0))),
            metadata={"names": list(data.get("names", []))},
        )
    except (KeyError, TypeError, ValueError) as e:
        raise SketchFormatError(f"{path}: malformed {LEGACY_CURVES_FORMAT} file: {e!r}") from e
