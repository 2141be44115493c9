"""The method's default dataparser: looks at ``data`` and hands it to the parser that reads that layout.

- not given (``None``): the built-in scene (generated on first use), read by ``blender-data``;
- a folder with ``transforms_train.json`` and ``rgb/``: ``clipasso3d-data``;
- a folder with ``transforms_train.json``: ``blender-data`` (NeRF synthetic scenes);
- a folder with ``transforms.json``, or a ``.json`` file: ``nerfstudio-data`` (captures from ``ns-process-data``);
- a folder with ``sparse/0`` or ``colmap/sparse/0``: ``colmap`` (images in ``images/``).

Whatever the layout, the outputs carry ``metadata["clipsketch_background"]`` (the background colour, ``[r, g, b]``
in [0, 1]), ``metadata["clipsketch_uniform_background"]`` (whether the photos are opaque and that colour is a uniform
backdrop) and, for scenes with a ground-truth sketch such as the built-in one, ``metadata["clipsketch_gt_curves"]``
(the path of ``curves.json``), and for ABC-NEF objects ``metadata["clipsketch_abcnef_gt"]`` (their ``gt/`` folder).
Missing or unreadable files raise :class:`ClipSketchDataError` naming the file,
when the parser is set up or the split is first read, before training starts.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Type

from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.data.dataparsers.colmap_dataparser import ColmapDataParserConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.utils.rich_utils import CONSOLE

from nerfstudio_clipsketch.dataparsers import (
    ClipSketchDataError,
    check_images,
    check_masks,
    describe_background,
    load_transforms,
)
from nerfstudio_clipsketch.dataparsers.builtin import ensure_builtin_scene
from nerfstudio_clipsketch.dataparsers.clipasso3d import Clipasso3dDataParserConfig
from nerfstudio_clipsketch.sketch import FORMAT_NAME, LEGACY_CURVES_FORMAT

Layout = Literal["clipasso3d", "blender", "nerfstudio", "colmap"]

ACCEPTED_LAYOUTS = (
    "no --data at all: the built-in scene",
    "a clipasso3d scene: a folder with transforms_train.json and rgb/<split>/ images",
    "a Blender / NeRF-synthetic scene: a folder with transforms_{train,val,test}.json",
    "a nerfstudio capture (e.g. from ns-process-data): a folder with transforms.json, or that .json file",
    "a COLMAP reconstruction: a folder with images/ and sparse/0/ or colmap/sparse/0/",
)

LAYOUT_NAMES = {
    "clipasso3d": "a clipasso3d scene (clipasso3d-data)",
    "blender": "a Blender / NeRF-synthetic scene (blender-data)",
    "nerfstudio": "a nerfstudio capture (nerfstudio-data)",
    "colmap": "a COLMAP reconstruction (colmap)",
}

COLMAP_MODEL_DIRS = (Path("colmap/sparse/0"), Path("sparse/0"))


def _layouts_message(data: Path, problem: str) -> str:
    accepted = "\n".join(f"  - {layout}" for layout in ACCEPTED_LAYOUTS)
    return f"{problem}: {data}\nclipsketch-data reads:\n{accepted}"


def detect_layout(data: Path) -> Layout:
    """Which layout ``data`` is in, from the files present (nothing is parsed).

    Raises:
        ClipSketchDataError: ``data`` does not exist or is in none of the accepted layouts.
    """
    data = Path(data)
    if not data.exists():
        raise ClipSketchDataError(_layouts_message(data, "Data path does not exist"))
    if data.is_file():
        if data.name in ("transforms_train.json", "transforms_val.json", "transforms_test.json"):
            return detect_layout(data.parent)
        if data.suffix.lower() == ".json":
            return "nerfstudio"
        raise ClipSketchDataError(_layouts_message(data, "Data path is a file but not a transforms .json file"))
    if (data / "transforms_train.json").is_file():
        return "clipasso3d" if (data / "rgb").is_dir() else "blender"
    if (data / "transforms.json").is_file():
        return "nerfstudio"
    if any((data / model).is_dir() for model in COLMAP_MODEL_DIRS):
        return "colmap"
    raise ClipSketchDataError(_layouts_message(data, "No known dataset layout in"))


@dataclass
class ClipSketchDataParserConfig(DataParserConfig):
    """Reads the built-in scene, clipasso3d scenes, Blender scenes, nerfstudio captures and COLMAP folders."""

    _target: Type = field(default_factory=lambda: ClipSketchDataParser)
    """target class to instantiate"""
    data: Optional[Path] = None
    """Scene to sketch: a clipasso3d, Blender, nerfstudio (transforms.json) or COLMAP folder, told apart by its files.
    None: the built-in scene, generated on first use into the cache folder (setting up the parser fills in its path)."""
    scale_factor: float = 1.0
    """Passed to the chosen parser: how much to scale camera positions by (after its own normalisation, if any)."""
    builtin_image_size: int = 224
    """Width and height in pixels of the built-in scene's images."""
    builtin_cache_dir: Optional[Path] = None
    """Folder that caches the built-in scene; None: $XDG_CACHE_HOME/nerfstudio-clipsketch (~/.cache/...)."""


@dataclass
class ClipSketchDataParser(DataParser):
    """Detects the layout of ``config.data`` and delegates to the matching parser (see the module docstring)."""

    config: ClipSketchDataParserConfig

    def __init__(self, config: ClipSketchDataParserConfig):
        super().__init__(config=config)
        if config.data is None:
            config.data = ensure_builtin_scene(config.builtin_cache_dir, config.builtin_image_size)
        self.data = Path(config.data)
        self.layout: Layout = detect_layout(self.data)
        if self.data.is_file() and self.layout != "nerfstudio":
            self.data = self.data.parent
        self.inner_config = self._inner_config()
        self.inner: DataParser = self.inner_config.setup()
        CONSOLE.log(f"clipsketch-data: reading {self.data} as {LAYOUT_NAMES[self.layout]}")
        self._background: Optional[List[float]] = None
        self._uniform = False

    def _inner_config(self) -> DataParserConfig:
        scale_factor = self.config.scale_factor
        if self.layout == "clipasso3d":
            return Clipasso3dDataParserConfig(data=self.data, scale_factor=scale_factor)
        if self.layout == "blender":
            return BlenderDataParserConfig(data=self.data, scale_factor=scale_factor)
        if self.layout == "nerfstudio":
            transforms = self.data if self.data.is_file() else self.data / "transforms.json"
            meta = load_transforms(transforms)
            # Only with a point cloud file: without one, nerfstudio would stop to ask about converting COLMAP points.
            return NerfstudioDataParserConfig(
                data=self.data, scale_factor=scale_factor, load_3D_points="ply_file_path" in meta
            )
        colmap_path = next(model for model in COLMAP_MODEL_DIRS if (self.data / model).is_dir())
        return ColmapDataParserConfig(data=self.data, scale_factor=scale_factor, colmap_path=colmap_path)

    def _check_before(self, split: str) -> None:
        """Checks for the files that nerfstudio's parsers would otherwise trip over with an unhelpful error."""
        if self.layout == "blender":
            path = self.data / f"transforms_{split}.json"
            meta = load_transforms(path)
            if "camera_angle_x" not in meta:
                raise ClipSketchDataError(f"{path} has no 'camera_angle_x' (horizontal field of view in radians).")
            filenames = [self.data / (str(f["file_path"]).removeprefix("./") + ".png") for f in meta["frames"]]
            check_images(filenames, source=path)
        elif self.layout == "nerfstudio":
            path = self.data if self.data.is_file() else self.data / "transforms.json"
            meta = load_transforms(path)
            check_images([path.parent / str(f["file_path"]) for f in meta["frames"]], source=path)
        elif self.layout == "colmap":
            model = self.data / self.inner_config.colmap_path  # type: ignore[attr-defined]
            for name in ("cameras", "images"):
                if not ((model / f"{name}.bin").is_file() or (model / f"{name}.txt").is_file()):
                    raise ClipSketchDataError(f"COLMAP model {model} has no {name}.bin or {name}.txt.")

    def _inner_outputs(self, split: str) -> DataparserOutputs:
        self._check_before(split)
        try:
            outputs = self.inner.get_dataparser_outputs(split)
        except FileNotFoundError as e:
            raise ClipSketchDataError(f"{self.layout} data in {self.data}: {e.filename} does not exist.") from e
        if len(outputs.image_filenames) == 0:
            raise ClipSketchDataError(f"{self.layout} data in {self.data} has no images for the {split!r} split.")
        if self.layout == "colmap":  # the other layouts' images were checked before parsing
            check_images(outputs.image_filenames, source=self.data / self.inner_config.colmap_path)  # type: ignore
        if outputs.mask_filenames:
            check_masks(outputs.image_filenames, outputs.mask_filenames, source=self.data)
        return outputs

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        outputs = self._inner_outputs(split)
        metadata: Dict[str, Any] = dict(outputs.metadata)
        if "clipsketch_background" not in metadata:
            if self._background is None:
                train = outputs if split == "train" else self._inner_outputs("train")
                self._background, self._uniform = describe_background(train.image_filenames, train.alpha_color)
            metadata["clipsketch_background"] = self._background
            metadata["clipsketch_uniform_background"] = self._uniform
        curves = self.data / "curves.json"
        if self.data.is_dir() and curves.is_file() and _is_curves_file(curves):
            metadata["clipsketch_gt_curves"] = str(curves)
        if self.data.is_dir() and any((self.data / "gt").glob("*features*.yml")):
            metadata["clipsketch_abcnef_gt"] = str(self.data / "gt")  # an ABC-NEF object's sharp edges
        return dataclasses.replace(outputs, metadata=metadata)


def _is_curves_file(path: Path) -> bool:
    """Whether ``path`` is a ground-truth sketch (:mod:`nerfstudio_clipsketch.sketch`'s JSON, or its legacy form)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") in (FORMAT_NAME, LEGACY_CURVES_FORMAT)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False
