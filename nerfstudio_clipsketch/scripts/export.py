"""``clipsketch-export``: write a trained sketch as JSON, polylines, tube meshes, per-camera SVG drawings or USD.

Like nerfstudio's ``ns-export``, one subcommand per format, each reading a run's ``config.yml``::

    clipsketch-export json --load-config outputs/.../config.yml --output-dir exports/   # sketch.json
    clipsketch-export ply  --load-config ... --output-dir exports/                      # curves.ply
    clipsketch-export obj  --load-config ... --output-dir exports/                      # curves.obj
    clipsketch-export mesh --load-config ... --output-dir exports/ --format obj         # tubes.obj
    clipsketch-export svg  --load-config ... --output-dir exports/ --hidden dashed      # view_0000.svg, ...
    clipsketch-export usd  --load-config ... --output-dir exports/                      # sketch.usda (usd-core)
    clipsketch-export all  --load-config ... --output-dir exports/                      # all of the above

The formats and frames (JSON and SVG in nerfstudio's normalised frame, PLY/OBJ/mesh in the capture's dataset
coordinates) are described in :mod:`nerfstudio_clipsketch.sketch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

import tyro
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from nerfstudio_clipsketch.cameras import get_viewmats
from nerfstudio_clipsketch.exporters.files import (
    PlyEncoding,
    write_mesh_obj,
    write_mesh_ply,
    write_polylines_obj,
    write_polylines_ply,
)
from nerfstudio_clipsketch.exporters.meshes import tube_mesh
from nerfstudio_clipsketch.exporters.svg import HiddenLines, hidden_by_strokes, hidden_samples, write_sketch_svg
from nerfstudio_clipsketch.exporters.usd import UsdMissingError, pxr_modules, write_sketch_usd
from nerfstudio_clipsketch.pipeline import ClipSketchPipeline
from nerfstudio_clipsketch.scripts.common import ScriptError, check_config_path, cli, load_run
from nerfstudio_clipsketch.sketch import Sketch


def _wrote(what: str, path: Path, suffix: str = "") -> None:
    CONSOLE.print(f"[bold green]Wrote {what} to {escape(str(path))}{escape(suffix)}", highlight=False)


@dataclass
class SketchExporter:
    """Export a trained clipsketch run into a folder."""

    load_config: Path
    """The run's config.yml (written by ns-train next to its checkpoints)."""
    output_dir: Path
    """Folder for the exported files (created if needed)."""

    def prepare(self) -> tuple[ClipSketchPipeline, Sketch]:
        """Check the paths, then load the run. Paths are checked first: loading a run takes seconds."""
        check_config_path(self.load_config)
        self.check_options()
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise ScriptError(f"--output-dir {str(self.output_dir)!r} is a file, not a folder.")
        pipeline = load_run(self.load_config).pipeline
        self.output_dir.mkdir(parents=True, exist_ok=True)
        return pipeline, pipeline.sketch()

    def check_options(self) -> None:
        """Refuse option values no export can use, before the run is loaded."""
        samples = getattr(self, "samples_per_curve", None)
        if samples is not None and samples < 2:
            raise ScriptError(f"--samples-per-curve must be at least 2, got {samples}")
        sides = getattr(self, "sides", None)
        if sides is not None and sides < 3:
            raise ScriptError(f"--sides must be at least 3, got {sides}")

    def write(self, pipeline: ClipSketchPipeline, sketch: Sketch) -> None:
        """Write this format's files into ``output_dir`` and say where they went."""
        raise NotImplementedError

    def main(self) -> None:
        """Load the run and write this format's files."""
        self.write(*self.prepare())


@dataclass
class ExportJson(SketchExporter):
    """The sketch as versioned JSON (sketch.json): control points, stroke style and the dataparser transform.
    Reload it with nerfstudio_clipsketch.sketch.Sketch.from_json."""

    def write(self, pipeline: ClipSketchPipeline, sketch: Sketch) -> None:
        path = self.output_dir / "sketch.json"
        sketch.to_json(path)
        _wrote(f"{sketch.num_curves} curves", path)


@dataclass
class ExportPolylinesPly(SketchExporter):
    """The curves as PLY polylines (curves.ply: vertices with a curve index, and edges), in dataset coordinates."""

    samples_per_curve: int = 100
    """Points per curve, evenly spaced in arc length, ends included."""
    encoding: PlyEncoding = "binary_little_endian"
    """PLY encoding."""

    def write(self, pipeline: ClipSketchPipeline, sketch: Sketch) -> None:
        path = self.output_dir / "curves.ply"
        write_polylines_ply(path, sketch.polylines(self.samples_per_curve, frame="dataset"), self.encoding)
        _wrote(f"{sketch.num_curves} polylines of {self.samples_per_curve} points", path)


@dataclass
class ExportPolylinesObj(SketchExporter):
    """The curves as OBJ polylines (curves.obj: one object and one 'l' line per curve), in dataset coordinates."""

    samples_per_curve: int = 100
    """Points per curve, evenly spaced in arc length, ends included."""

    def write(self, pipeline: ClipSketchPipeline, sketch: Sketch) -> None:
        path = self.output_dir / "curves.obj"
        write_polylines_obj(path, sketch.polylines(self.samples_per_curve, frame="dataset"))
        _wrote(f"{sketch.num_curves} polylines of {self.samples_per_curve} points", path)


@dataclass
class ExportMesh(SketchExporter):
    """The strokes as closed tube meshes (tubes.ply or tubes.obj), in dataset coordinates, with the stroke width
    as diameter."""

    format: Literal["ply", "obj"] = "ply"
    """Mesh file format."""
    samples_per_curve: int = 100
    """Rings per tube, evenly spaced in arc length along the curve."""
    sides: int = 8
    """Vertices per ring (at least 3)."""

    def write(self, pipeline: ClipSketchPipeline, sketch: Sketch) -> None:
        radius = sketch.stroke_width_dataset / 2.0
        polylines = sketch.polylines(self.samples_per_curve, frame="dataset")
        vertices, faces = tube_mesh(polylines, radius, self.sides)
        path = self.output_dir / f"tubes.{self.format}"
        (write_mesh_ply if self.format == "ply" else write_mesh_obj)(path, vertices, faces)
        _wrote(
            f"{sketch.num_curves} tubes ({len(vertices)} vertices, {len(faces)} triangles, radius {radius:.4g} "
            "dataset units)",
            path,
        )


@dataclass
class ExportSvg(SketchExporter):
    """One SVG drawing per camera (view_0000.svg, ...), the sketch as that camera sees it, at its image size.
    Lens distortion is ignored (pinhole projection)."""

    cameras: Literal["test", "train", "all"] = "test"
    """Which cameras to draw: the test split, the training split, or both (training cameras first)."""
    samples_per_curve: int = 100
    """Polyline points per curve."""
    hidden: HiddenLines = "drop"
    """Stroke parts the object hides from a camera (behind its visual hull): 'drop' them, draw them 'dashed' and
    thinner (as technical drawings show hidden edges), or 'show' them like the rest (every stroke, as if the object
    were glass). Captures without a visual hull hide only what the other strokes, taken as tubes, hide, and say so."""

    def write(self, pipeline: ClipSketchPipeline, sketch: Sketch) -> None:
        datamanager, hull = pipeline.datamanager, None
        if self.hidden != "show":
            hull, why = pipeline.visual_hull()
            if hull is None:
                CONSOLE.print(f"[yellow]No visual hull ({escape(why)}): strokes hide only what the other strokes hide.")
        splits: list[Cameras] = []
        if self.cameras in ("train", "all"):
            splits.append(datamanager.train_dataset.cameras)  # type: ignore[attr-defined]
        if self.cameras in ("test", "all"):
            splits.append(datamanager.eval_dataset.cameras)  # type: ignore[attr-defined]
        index = 0
        for cams in splits:
            cams = cams.reshape(-1).to("cpu")
            viewmats = get_viewmats(cams.camera_to_worlds)
            Ks = cams.get_intrinsics_matrices()
            for i in range(len(cams)):
                n = self.samples_per_curve
                hidden = None
                if hull is not None:
                    hidden = hidden_samples(sketch, hull, cams.camera_to_worlds[i], n)
                elif self.hidden != "show":
                    hidden = hidden_by_strokes(sketch, viewmats[i], Ks[i], n)
                write_sketch_svg(
                    self.output_dir / f"view_{index:04d}.svg",
                    sketch,
                    viewmats[i],
                    Ks[i],
                    int(cams.width[i]),
                    int(cams.height[i]),
                    samples_per_curve=n,
                    hidden=hidden,
                    hidden_lines=self.hidden,
                )
                index += 1
        if index == 0:
            raise ScriptError(f"The run has no {self.cameras} cameras to draw.")
        last = f" ... view_{index - 1:04d}.svg" if index > 1 else ""
        cameras = f"{self.cameras} cameras"
        if self.cameras != "train" and datamanager.test_split != "test":  # the scene has no test split
            cameras += f", the {datamanager.test_split!r} split standing in for the missing test split"
        _wrote(f"{index} SVG drawings ({cameras})", self.output_dir / "view_0000.svg", last)


@dataclass
class ExportUsd(SketchExporter):
    """The sketch as Pixar USD curves (sketch.usda): one BasisCurves prim, cubic Bézier strokes exactly as trained, the
    stroke width and colour, and the capture's cameras, in dataset coordinates. Needs usd-core."""

    cameras: Literal["test", "train", "all", "none"] = "all"
    """Which of the capture's cameras to add as USD cameras."""
    samples_per_curve: int = 100
    """Points per stroke where strokes of degree 4 or more are written as polylines (other degrees are exact)."""

    def check_options(self) -> None:
        super().check_options()
        try:
            pxr_modules()
        except UsdMissingError as e:
            raise ScriptError(str(e)) from e

    def write(self, pipeline: ClipSketchPipeline, sketch: Sketch) -> None:
        datamanager, cameras = pipeline.datamanager, {}
        if self.cameras in ("train", "all"):
            cameras["train"] = datamanager.train_dataset.cameras  # type: ignore[attr-defined]
        if self.cameras in ("test", "all"):
            cameras[datamanager.test_split] = datamanager.eval_dataset.cameras  # type: ignore[attr-defined]
        path = self.output_dir / "sketch.usda"
        how = write_sketch_usd(path, sketch, cameras, self.samples_per_curve)
        count = sum(len(c.reshape(-1)) for c in cameras.values())
        _wrote(f"{sketch.num_curves} strokes ({how}) and {count} cameras", path)


@dataclass
class ExportAll(SketchExporter):
    """Every format at once, loading the run once: sketch.json, curves.ply, curves.obj, tubes.<mesh-format>,
    view_<i>.svg and (with usd-core) sketch.usda."""

    samples_per_curve: int = 100
    """Points per curve of the polylines, tubes and SVG paths."""
    mesh_format: Literal["ply", "obj"] = "ply"
    """Tube mesh file format."""
    sides: int = 8
    """Vertices per tube ring (at least 3)."""
    cameras: Literal["test", "train", "all"] = "test"
    """Cameras to draw SVGs for: the test split, the training split, or both (training cameras first)."""
    hidden: HiddenLines = "drop"
    """SVGs: stroke parts the object hides, 'drop'ped, 'dashed' or 'show'n."""

    def write(self, pipeline: ClipSketchPipeline, sketch: Sketch) -> None:
        paths = {"load_config": self.load_config, "output_dir": self.output_dir}
        n = self.samples_per_curve
        exporters: list[SketchExporter] = [
            ExportJson(**paths),
            ExportPolylinesPly(**paths, samples_per_curve=n),
            ExportPolylinesObj(**paths, samples_per_curve=n),
            ExportMesh(**paths, format=self.mesh_format, samples_per_curve=n, sides=self.sides),
            ExportSvg(**paths, cameras=self.cameras, samples_per_curve=n, hidden=self.hidden),
        ]
        try:
            pxr_modules()
            exporters.append(ExportUsd(**paths, samples_per_curve=n))
        except UsdMissingError:
            CONSOLE.print("[yellow]No sketch.usda: USD export needs usd-core (pip install usd-core).", highlight=False)
        for exporter in exporters:
            exporter.write(pipeline, sketch)


Commands = tyro.conf.FlagConversionOff[
    Union[
        Annotated[ExportJson, tyro.conf.subcommand(name="json")],
        Annotated[ExportPolylinesPly, tyro.conf.subcommand(name="ply")],
        Annotated[ExportPolylinesObj, tyro.conf.subcommand(name="obj")],
        Annotated[ExportMesh, tyro.conf.subcommand(name="mesh")],
        Annotated[ExportSvg, tyro.conf.subcommand(name="svg")],
        Annotated[ExportUsd, tyro.conf.subcommand(name="usd")],
        Annotated[ExportAll, tyro.conf.subcommand(name="all")],
    ]
]


def entrypoint() -> None:
    """Entrypoint for use with pyproject scripts."""
    cli(Commands)


if __name__ == "__main__":
    entrypoint()
