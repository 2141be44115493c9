"""A sketch as Pixar USD curves (``sketch.usda``), for Blender, Houdini, Omniverse and usdview, written with
Pixar's own ``usd-core`` (``pip install nerfstudio-clipsketch[usd]``).

The stage holds, in the capture's dataset coordinates (z up, one unit taken as a metre: ``metersPerUnit`` 1):

- ``/Sketch/Strokes``: one ``UsdGeomBasisCurves`` prim with every stroke. Cubic strokes (the default) are written as
  they are, ``type`` cubic with the ``bezier`` basis: four control points per curve, no resampling. Quadratic strokes
  are raised to cubic (exact: the same curves), straight ones (degree 1) are ``linear`` curves of their two ends, and
  strokes of degree 4 or more are sampled into ``linear`` polylines (the file's documentation says which). The stroke
  width (dataset units) is the curves' constant ``widths``, the stroke colour their ``displayColor``.
- ``/Sketch/Cameras/<split>_<i>``: the capture's cameras as ``UsdGeomCamera`` prims (looking down their -z, y up,
  as nerfstudio's), apertures and focal length from the pinhole intrinsics with a 36-unit horizontal aperture.

The control points are those of :attr:`nerfstudio_clipsketch.sketch.Sketch.control_points_dataset`: the dataparser
transform is affine, so a Bézier curve's control points map to the transformed curve's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras

from nerfstudio_clipsketch.cameras import to_dataset_coordinates
from nerfstudio_clipsketch.sketch import PathLike, Sketch

APERTURE = 36.0
"""Horizontal aperture of the written cameras (the focal length is scaled to it: only their ratio matters)."""


class UsdMissingError(ImportError):
    """usd-core (Pixar's ``pxr``) is not installed."""


def pxr_modules():
    try:
        from pxr import Gf, Sdf, Usd, UsdGeom, Vt
    except ImportError as e:
        raise UsdMissingError(
            "USD export needs Pixar's usd-core: pip install usd-core (or nerfstudio-clipsketch[usd])"
        ) from e
    return Gf, Sdf, Usd, UsdGeom, Vt


def cubic_control_points(sketch: Sketch) -> Optional[torch.Tensor]:
    """The strokes as cubic Bézier control points ``[N, 4, 3]`` in dataset coordinates (degree 2 raised exactly), or
    None when their degree has no exact cubic form (1: linear; 4 and more: sampled)."""
    cp = sketch.control_points_dataset.detach().double()
    if sketch.degree == 3:
        return cp
    if sketch.degree == 2:
        p0, p1, p2 = cp[:, 0], cp[:, 1], cp[:, 2]
        return torch.stack([p0, p0 + 2.0 / 3.0 * (p1 - p0), p2 + 2.0 / 3.0 * (p1 - p2), p2], dim=1)
    return None


def write_sketch_usd(
    path: PathLike, sketch: Sketch, cameras: Optional[Dict[str, Cameras]] = None, samples_per_curve: int = 100
) -> str:
    """Write ``sketch`` (and ``cameras`` by split name, in nerfstudio's normalised frame) as a USD stage at ``path``
    (``.usda``: text, ``.usdc``/``.usd``: binary); returns how the strokes were written."""
    Gf, Sdf, Usd, UsdGeom, Vt = pxr_modules()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Usd.Stage.CreateInMemory()  # exported at the end: overwrites a file there, whatever USD has loaded
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    root = UsdGeom.Xform.Define(stage, "/Sketch")
    stage.SetDefaultPrim(root.GetPrim())

    strokes = UsdGeom.BasisCurves.Define(stage, "/Sketch/Strokes")
    cubic = cubic_control_points(sketch)
    if cubic is not None:
        points, how = (
            cubic,
            "cubic Bezier curves, control points exact"
            + ("" if sketch.degree == 3 else " (quadratic strokes raised to cubic)"),
        )
        strokes.CreateTypeAttr(UsdGeom.Tokens.cubic)
        strokes.CreateBasisAttr(UsdGeom.Tokens.bezier)
    elif sketch.degree == 1:
        points, how = sketch.control_points_dataset.detach().double(), "straight strokes, linear curves of their ends"
        strokes.CreateTypeAttr(UsdGeom.Tokens.linear)
    else:
        points = sketch.polylines(samples_per_curve, frame="dataset").double()
        how = f"degree-{sketch.degree} strokes sampled into linear polylines of {samples_per_curve} points"
        strokes.CreateTypeAttr(UsdGeom.Tokens.linear)
    strokes.CreateWrapAttr(UsdGeom.Tokens.nonperiodic)
    flat = points.reshape(-1, 3).numpy()
    strokes.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(flat.astype(np.float32)))
    strokes.CreateCurveVertexCountsAttr(Vt.IntArray([int(points.shape[1])] * int(points.shape[0])))
    strokes.CreateWidthsAttr(Vt.FloatArray([float(sketch.stroke_width_dataset)]))
    strokes.SetWidthsInterpolation(UsdGeom.Tokens.constant)
    color = strokes.CreateDisplayColorPrimvar(UsdGeom.Tokens.constant)
    color.Set(Vt.Vec3fArray([Gf.Vec3f(*sketch.stroke_color)]))
    lo, hi = flat.min(0), flat.max(0)
    strokes.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*lo.tolist()), Gf.Vec3f(*hi.tolist())]))
    stage.GetRootLayer().documentation = (
        f"nerfstudio-clipsketch sketch: {sketch.num_curves} strokes as {how}; dataset coordinates, z up; stroke "
        f"width {sketch.stroke_width_dataset:.6g} units."
    )
    for split, split_cameras in (cameras or {}).items():
        _write_cameras(stage, sketch, split, split_cameras)
    if not stage.GetRootLayer().Export(str(path)):
        raise OSError(f"USD could not write {path}")
    return how


def _write_cameras(stage, sketch: Sketch, split: str, cameras: Cameras) -> None:
    Gf, Sdf, Usd, UsdGeom, Vt = pxr_modules()
    cameras = cameras.reshape(-1).to("cpu")
    c2w = cameras.camera_to_worlds.double()
    R, scale = sketch.dataparser_transform[:3, :3].double(), sketch.dataparser_scale
    for i in range(len(cameras)):
        rotation = R.T @ c2w[i, :3, :3]  # the camera's axes in the dataset's frame
        centre = to_dataset_coordinates(c2w[i, :3, 3], sketch.dataparser_transform.double(), scale)
        matrix = torch.eye(4, dtype=torch.float64)
        matrix[:3, :3], matrix[:3, 3] = rotation, centre
        camera = UsdGeom.Camera.Define(stage, f"/Sketch/Cameras/{split}_{i:04d}")
        # USD matrices act on row vectors: the transpose of the column-vector camera-to-world.
        camera.AddTransformOp().Set(Gf.Matrix4d(matrix.T.tolist()))
        width, height = float(cameras.width[i]), float(cameras.height[i])
        unit = APERTURE / width  # aperture units per pixel
        camera.CreateHorizontalApertureAttr(APERTURE)
        camera.CreateVerticalApertureAttr(height * unit * float(cameras.fx[i]) / float(cameras.fy[i]))
        camera.CreateFocalLengthAttr(float(cameras.fx[i]) * unit)
        camera.CreateHorizontalApertureOffsetAttr((float(cameras.cx[i]) - width / 2.0) * unit)
        camera.CreateVerticalApertureOffsetAttr((height / 2.0 - float(cameras.cy[i])) * unit)
