"""A family of CAD-like parts with exact ground truth, written in the ABC-NEF layout for benchmarks.

Every part (:mod:`.parts`: plates, thin walls, turned parts, blocks and profiles, built by CSG with manifold3d, the
engine ``trimesh.boolean`` uses) is placed in the unit cube as ABC-NEF places its objects, rendered from 50 training
and 4 validation cameras posed like ABC-NEF's (:mod:`.views`) by a numpy z-buffer rasterizer (:mod:`.raster`; not
pyrender / OSMesa, which need system packages that CI machines lack), and written with its sharp edges as
ground truth (:mod:`.ground_truth`) so that ``ns-train clipsketch --data <part>`` and ``clipsketch-eval`` treat it
exactly as an ABC-NEF object (:mod:`.scene`).

Usage::

    python -m benchmarks.family                      # all parts at 400 px into ~/.cache/nerfstudio-clipsketch/family
    python -m benchmarks.family --only hex_nut tube --size 800 --output /tmp/family
    python -m benchmarks.family --parts 4 --sheet benchmarks/family_parts.png

Needs ``trimesh`` and ``manifold3d``.
"""

from benchmarks.family.parts import PARTS, Part
from benchmarks.family.scene import default_output, ensure_family, write_part

__all__ = ["PARTS", "Part", "default_output", "ensure_family", "write_part"]
