"""How mirror-symmetric a sketch is, and how many parameters it has: the mean distance of the sketch to its mirror
image (:func:`nerfstudio_clipsketch.symmetry.symmetry_score`) over the reference's diagonal, across the plane its
strokes are tied across, or, for an untied sketch, across its own best plane."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from nerfstudio_clipsketch.curves import sample_curves
from nerfstudio_clipsketch.evaluation.metrics import bbox_diagonal
from nerfstudio_clipsketch.symmetry import find_plane, symmetry_score


@torch.no_grad()
def symmetry_section(pipeline, reference_diagonal: Optional[float] = None) -> Dict[str, Any]:
    """``{"tied", "plane", "score", "diagonal", "num_free_parameters", "num_parameters"}`` of the pipeline's sketch;
    ``reference_diagonal``: the reference's bounding-box diagonal in dataset units (None: the sketch's own). The plane
    is written in nerfstudio's normalised frame, where the model works."""
    curves = pipeline.model.curves
    world = curves.world().detach().cpu().double()
    scale = float(pipeline.datamanager.train_dataparser_outputs.dataparser_scale)
    samples = sample_curves(world, 32, by_length=True)
    diagonal = reference_diagonal * scale if reference_diagonal else bbox_diagonal(samples)
    plane = curves.plane()
    tied = plane is not None
    if plane is None:
        plane = find_plane(samples, diagonal).best
    return {
        "tied": tied,
        "plane": str(plane),
        "score": symmetry_score(world, plane, diagonal),
        "diagonal": diagonal / scale,
        "num_free_parameters": int(curves.num_free_parameters),
        "num_parameters": int(world.numel()),
    }
