"""Poses that match their frames: clipasso3d exports carry each camera twice, as ``transform_matrix`` and as Blender's
``position`` (and the scene's ``object_position``). When the two disagree because every matrix is a neighbouring
frame's (an export that wrote each matrix one frame late, as the shared duck's), the matrices are shifted back into
place, the frames at the end that have no partner get a look-at from their ``position`` to ``object_position``
(world up +z, Blender's), and the log says so once per scene. Disagreements that are no such shift are refused with
one message naming the frame; frames without ``position`` are taken as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set

import numpy as np
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from nerfstudio_clipsketch.dataparsers import ClipSketchDataError

MAX_SHIFT = 2
"""Shifts of up to this many frames, either way, are repaired."""
TOLERANCE = 1e-4
"""A matrix's translation matches a ``position`` within this fraction of the cameras' distance to the object."""
AXIS_TOLERANCE_DEG = 1.0
"""A repaired camera looks at ``object_position`` within this many degrees (when the scene gives one)."""
_warned: Set[str] = set()


def look_at(position: np.ndarray, target: np.ndarray, up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenGL camera-to-world ``[3, 4]`` at ``position`` looking at ``target`` (Blender's cameras: -z forward)."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:  # looking straight up or down: any right angle will do
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right = right / np.linalg.norm(right)
    return np.stack([right, np.cross(right, forward), -forward, position], axis=1)


def _positions(frames: List[Dict[str, Any]], path: Path) -> Optional[np.ndarray]:
    """Every frame's ``position`` ``[N, 3]``, or None when some frame has none (nothing to compare with)."""
    if not frames or any("position" not in frame for frame in frames):
        return None
    try:
        positions = np.asarray([frame["position"] for frame in frames], dtype=np.float64)
    except (TypeError, ValueError):
        positions = np.full((1,), np.nan)
    if positions.shape != (len(frames), 3) or not np.isfinite(positions).all():
        raise ClipSketchDataError(f"{path}: every frame's 'position' must be three finite numbers.")
    return positions


def _shift(poses: np.ndarray, positions: np.ndarray, tolerance: float) -> Optional[int]:
    """The shift ``k`` with frame ``i``'s matrix at frame ``i - k``'s position for every frame that has one (0: the
    poses match), or None."""
    for k in sorted(range(-MAX_SHIFT, MAX_SHIFT + 1), key=abs):
        i = np.arange(len(poses))
        valid = (i - k >= 0) & (i - k < len(poses))
        if valid.sum() < max(1, len(poses) // 2):
            continue
        error = np.linalg.norm(poses[valid, :, 3] - positions[i[valid] - k], axis=-1)
        if (error <= tolerance).all():
            return k
    return None


def repair_poses(
    poses: np.ndarray, frames: List[Dict[str, Any]], path: Path, object_position: Optional[np.ndarray]
) -> np.ndarray:
    """``poses`` ``[N, 3, 4]`` of ``frames`` (read from ``path``), with a lag of up to :data:`MAX_SHIFT` frames
    repaired (module docstring).

    Raises:
        ClipSketchDataError: the matrices disagree with the frames' positions and are no shifted copy of them; or a
            lag needs a look-at but the scene gives no ``object_position``; or the repaired cameras do not look at it.
    """
    positions = _positions(frames, path)
    if positions is None:
        return poses
    centre = object_position if object_position is not None else positions.mean(0)
    size = float(np.linalg.norm(positions - centre, axis=-1).max()) or 1.0
    k = _shift(poses, positions, TOLERANCE * size)
    if k == 0:
        return poses
    if k is None:
        worst = int(np.argmax(np.linalg.norm(poses[:, :, 3] - positions, axis=-1)))
        raise ClipSketchDataError(
            f"{path}: frame {worst}'s transform_matrix places its camera at {np.round(poses[worst, :, 3], 4).tolist()} "
            f"but its 'position' is {np.round(positions[worst], 4).tolist()}, and the matrices are not the frames' "
            f"own shifted by up to {MAX_SHIFT} frames (the lag clipsketch repairs). Export the cameras again, or "
            "remove the 'position' fields to use the matrices as they are."
        )
    repaired = np.empty_like(poses)
    i = np.arange(len(poses))
    source = i + k  # frame i's camera is the matrix stored k frames later
    inside = (source >= 0) & (source < len(poses))
    repaired[inside] = poses[source[inside]]
    ends = np.flatnonzero(~inside).tolist()
    if ends and object_position is None:
        raise ClipSketchDataError(
            f"{path}: the transform_matrix of every frame belongs to the frame {abs(k)} "
            f"{'after' if k < 0 else 'before'} it; frames {ends} have no matrix of their own and the scene gives no "
            "'object_position' to aim them at."
        )
    for end in ends:
        repaired[end] = look_at(positions[end], object_position)
    if object_position is not None:
        axes = -repaired[:, :, 2]
        to_object = object_position - repaired[:, :, 3]
        cosine = (axes * to_object).sum(-1) / np.linalg.norm(to_object, axis=-1)
        worst = float(np.degrees(np.arccos(np.clip(cosine.min(), -1.0, 1.0))))
        if worst > AXIS_TOLERANCE_DEG:
            raise ClipSketchDataError(
                f"{path}: the matrices are the frames' positions shifted by {k} frame(s), but shifted back a camera "
                f"still looks {worst:.1f} degrees away from object_position; clipsketch does not guess further. "
                "Export the cameras again."
            )
    scene = str(Path(path).parent.resolve())
    if scene not in _warned:
        _warned.add(scene)
        late = f"{k} frame{'s' if abs(k) > 1 else ''} {'late' if k > 0 else 'early'}"
        CONSOLE.log(
            f"[yellow]clipsketch: the poses in {escape(Path(path).name)} are {late}: each frame's transform_matrix is "
            f"the camera at another frame's 'position'. Repaired: every frame takes the matrix stored {abs(k)} "
            f"frame(s) {'later' if k > 0 else 'earlier'}, and frame(s) {ends} look from their position at "
            "object_position (the other splits of this scene are repaired the same way).",
            highlight=False,
        )
    return repaired
