"""Writing a :class:`~nerfstudio_clipsketch.sketch.Sketch` for other tools.

- :mod:`.files`: polylines and triangle meshes as PLY and OBJ files;
- :mod:`.meshes`: closed tubes around polylines, in rotation-minimising frames;
- :mod:`.svg`: one camera's view of a sketch as an SVG drawing.

Frames and units are those of :mod:`nerfstudio_clipsketch.sketch`: PLY, OBJ and tubes in the capture's dataset
coordinates, SVGs in the continuous pixel coordinates of a camera of the normalised frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor


def as_numpy(array: Any) -> np.ndarray:
    """Arrays on any device, with or without autograd history, as float64 NumPy arrays."""
    if isinstance(array, Tensor):
        array = array.detach().cpu()
    return np.asarray(array, dtype=np.float64)
