"""The family: CAD-like parts built by CSG (manifold3d), each from a fixed seed that draws its dimensions (mm).

Kinds: ``flat`` (plates, discs), ``thin`` (walls a few percent of the part's size), ``round`` (turned parts,
cylinders, holes) and ``boxy`` (blocks and profiles). :data:`PARTS` lists them in a fixed order.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import trimesh
from manifold3d import Manifold

from benchmarks.family.shapes import (
    along,
    box,
    chamfered_rectangle,
    circle,
    cylinder,
    difference,
    extrude,
    polygon,
    rectangle,
    regular_polygon,
    revolve,
    rounded_rectangle,
    slot,
    to_trimesh,
    union,
)

Kind = Literal["flat", "thin", "round", "boxy"]
Uniform = Callable[[float, float], float]
"""Draws a dimension uniformly from ``[low, high)`` with the part's seeded generator."""


@dataclass(frozen=True)
class Part:
    """One part of the family: ``build`` makes its solid from dimensions drawn with a generator seeded by ``seed``."""

    name: str
    kind: Kind
    seed: int
    build: Callable[[Uniform], Manifold]

    def solid(self) -> Manifold:
        rng = np.random.default_rng(self.seed)
        return self.build(lambda low, high: float(rng.uniform(low, high)))

    def mesh(self) -> trimesh.Trimesh:
        """The part as a watertight mesh, in its own millimetres (not yet in the unit cube)."""
        return to_trimesh(self.solid())


PARTS: dict[str, Part] = {}
"""Every part by name, in the order they were defined."""


def _part(kind: Kind) -> Callable[[Callable[[Uniform], Manifold]], Callable[[Uniform], Manifold]]:
    def register(build: Callable[[Uniform], Manifold]) -> Callable[[Uniform], Manifold]:
        # The seed comes from the name, so adding or reordering parts leaves the others' dimensions as they were.
        PARTS[build.__name__] = Part(build.__name__, kind, seed=zlib.crc32(build.__name__.encode()), build=build)
        return build

    return register


def _prism(profile, length: float, axis: str = "z") -> Manifold:
    """``profile`` extruded ``length`` and centred on the origin along ``axis``."""
    return along(extrude(profile, length, -length / 2), axis)


# --- boxy ---------------------------------------------------------------------------------------------------------


@_part("boxy")
def block(u: Uniform) -> Manifold:
    return box((u(50, 70), u(30, 45), u(20, 35)))


@_part("boxy")
def chamfered_block(u: Uniform) -> Manifold:
    """Vertical edges chamfered, the two long top edges chamfered at 45 degrees, a through-hole."""
    w, d, h, c = u(55, 70), u(35, 45), u(25, 35), u(4, 6)
    solid = extrude(chamfered_rectangle(w, d, c), h)
    edge = box((2 * w, c * math.sqrt(2), c * math.sqrt(2))).rotate((45.0, 0.0, 0.0))  # cuts legs of length c
    cutters = [edge.translate((0, s * d / 2, h)) for s in (-1, 1)]
    return difference(solid, *cutters, cylinder(u(5, 8), 3 * h, (0.0, 0.0, h / 2)))


@_part("boxy")
def filleted_block(u: Uniform) -> Manifold:
    """Filleted vertical edges (smooth), sharp top and bottom rims, a counter-sunk hole."""
    w, d, h, r = u(55, 70), u(35, 45), u(20, 30), u(6, 10)
    hole = u(5, 7)
    sink = revolve([(0, h - 2 * hole), (2 * hole, h), (2 * hole, h + 5), (0, h + 5)])  # 90-degree countersink
    return difference(extrude(rounded_rectangle(w, d, r), h), cylinder(hole, 3 * h, (0, 0, h / 2)), sink)


@_part("boxy")
def pillow_block(u: Uniform) -> Manifold:
    """A base with two bolt holes and a raised bearing housing bored along x."""
    w, d, t, r = u(80, 100), u(30, 38), u(8, 12), u(15, 18)
    axis_z = t + r * 0.9
    housing = union(cylinder(r, d, (0, 0, axis_z), "y"), box((2 * r, d, axis_z), (0, 0, axis_z / 2)))
    base = box((w, d, t), (0, 0, t / 2))
    bolts = [cylinder(u(3.5, 4.5), 3 * t, (s * (w / 2 - 10), 0, t / 2)) for s in (-1, 1)]
    return difference(union(base, housing), cylinder(r * 0.55, 2 * d, (0, 0, axis_z), "y"), *bolts)


@_part("boxy")
def clevis(u: Uniform) -> Manifold:
    """A fork: a block with a slot between two prongs and a cross pin hole."""
    w, d, h, gap = u(30, 40), u(30, 40), u(50, 70), u(10, 14)
    body = box((w, d, h), (0, 0, h / 2))
    fork = box((w * 2, gap, h * 0.6), (0, 0, h * 0.7 + 0.01))
    return difference(body, fork, cylinder(u(4, 6), 2 * d, (0, 0, h * 0.75), "y"))


@_part("boxy")
def wedge(u: Uniform) -> Manifold:
    """A ramp (right triangular prism) with a hole through its sloping face."""
    length, height, width = u(60, 80), u(25, 35), u(30, 40)
    ramp = _prism(polygon([(0, 0), (length, 0), (length, height), (length * 0.25, height)]), width, "y")
    return difference(ramp, cylinder(u(4, 6), 3 * height, (length * 0.7, 0, height / 2)))


@_part("boxy")
def cross_block(u: Uniform) -> Manifold:
    """A plus-shaped prism."""
    arm, size, h = u(14, 20), u(55, 70), u(15, 25)
    return extrude(rectangle(size, arm) + rectangle(arm, size), h)


@_part("boxy")
def t_profile(u: Uniform) -> Manifold:
    """A short T-section bar lying along x."""
    flange, web, t, length = u(40, 50), u(30, 40), u(6, 9), u(70, 90)
    profile = rectangle(flange, t, (0, web - t / 2)) + rectangle(t * 1.2, web, (0, web / 2))
    return _prism(profile, length, "x")


# --- thin walls -------------------------------------------------------------------------------------------------


@_part("thin")
def l_bracket(u: Uniform) -> Manifold:
    """An angle bracket with a hole in each leg."""
    a, b, t, width = u(50, 60), u(40, 50), u(3, 4), u(35, 45)
    profile = rectangle(a, t, (a / 2, t / 2)) + rectangle(t, b, (t / 2, b / 2))
    solid = _prism(profile, width, "y")
    holes = [cylinder(4.0, 4 * t, (a * 0.65, 0, 0)), cylinder(4.0, 4 * t, (0, 0, b * 0.65), "x")]
    return difference(solid, *holes)


@_part("thin")
def gusset_bracket(u: Uniform) -> Manifold:
    """An angle bracket stiffened by a triangular rib in the middle."""
    a, t, width = u(45, 55), u(4, 5), u(40, 50)
    profile = rectangle(a, t, (a / 2, t / 2)) + rectangle(t, a, (t / 2, a / 2))
    rib = _prism(polygon([(t, t), (a * 0.8, t), (t, a * 0.8)]), t, "y")
    return union(_prism(profile, width, "y"), rib)


@_part("thin")
def u_channel(u: Uniform) -> Manifold:
    w, h, t, length = u(40, 50), u(30, 40), u(2.5, 3.5), u(80, 100)
    profile = rectangle(w, h, (0, h / 2)) - rectangle(w - 2 * t, h, (0, h / 2 + t))
    return _prism(profile, length, "x")


@_part("thin")
def i_beam(u: Uniform) -> Manifold:
    flange, h, t, length = u(35, 45), u(45, 55), u(3, 4), u(80, 100)
    profile = rectangle(flange, t, (0, t / 2)) + rectangle(flange, t, (0, h - t / 2)) + rectangle(t, h, (0, h / 2))
    return _prism(profile, length, "x")


@_part("thin")
def hollow_box(u: Uniform) -> Manifold:
    """An open-topped box with thin walls."""
    w, d, h, t = u(60, 70), u(40, 50), u(30, 40), u(2.5, 3.5)
    return difference(box((w, d, h), (0, 0, h / 2)), box((w - 2 * t, d - 2 * t, h), (0, 0, h / 2 + t)))


@_part("thin")
def tube(u: Uniform) -> Manifold:
    r, wall, h = u(18, 22), u(2, 3), u(55, 70)
    return difference(cylinder(r, h), cylinder(r - wall, 2 * h))


@_part("thin")
def gasket(u: Uniform) -> Manifold:
    """A thin frame with a rounded window and six bolt holes."""
    w, d, t, rim = u(80, 90), u(55, 65), u(2, 3), u(10, 12)
    profile = rounded_rectangle(w, d, 8) - rounded_rectangle(w - 2 * rim, d - 2 * rim, 5)
    for x in (-w / 2 + rim / 2, 0.0, w / 2 - rim / 2):
        for y in (-d / 2 + rim / 2, d / 2 - rim / 2):
            profile = profile - circle(2.5, (x, y))
    return extrude(profile, t)


# --- flat ---------------------------------------------------------------------------------------------------------


@_part("flat")
def plate_holes(u: Uniform) -> Manifold:
    """A plate with four corner holes and a large central one."""
    w, d, t = u(80, 100), u(50, 65), u(5, 8)
    profile = rectangle(w, d) - circle(u(9, 13))
    for x in (-w / 2 + 9, w / 2 - 9):
        for y in (-d / 2 + 9, d / 2 - 9):
            profile = profile - circle(u(3, 4), (x, y))
    return extrude(profile, t)


@_part("flat")
def slotted_plate(u: Uniform) -> Manifold:
    """A chamfered-corner plate with three parallel slots."""
    w, d, t = u(90, 110), u(45, 55), u(5, 7)
    profile = chamfered_rectangle(w, d, 8)
    for x in (-w / 4, 0.0, w / 4):
        profile = profile - slot(d * 0.6, u(6, 9), (x, 0), angle=90)
    return extrude(profile, t)


@_part("flat")
def counterbored_plate(u: Uniform) -> Manifold:
    """A thick plate with two counterbored holes and a pocket."""
    w, d, t = u(80, 95), u(45, 55), u(12, 16)
    solid = box((w, d, t), (0, 0, t / 2))
    cuts = [box((w * 0.3, d * 0.4, t), (0, 0, t - 4 + t / 2))]
    for x in (-w / 3, w / 3):
        cuts += [cylinder(4.0, 3 * t, (x, 0, t / 2)), cylinder(7.5, t, (x, 0, t - 5 + t / 2))]
    return difference(solid, *cuts)


@_part("flat")
def washer(u: Uniform) -> Manifold:
    r = u(20, 25)
    return extrude(circle(r) - circle(r * u(0.4, 0.5)), u(2.5, 3.5))


@_part("flat")
def sprocket(u: Uniform) -> Manifold:
    """A toothed disc with a keyed bore."""
    r, teeth, t = u(28, 33), 16, u(5, 7)
    profile = circle(r)
    for i in range(teeth):
        profile = profile + rectangle(5.0, 10.0, (0, r + 3)).rotate(360.0 * i / teeth)
    bore = circle(r * 0.25) + rectangle(4.0, r * 0.25 + 2, (0, r * 0.125 + 1))
    return extrude(profile - bore, t)


@_part("flat")
def boss_plate(u: Uniform) -> Manifold:
    """A plate carrying three round bosses, each with a through-hole."""
    w, d, t = u(90, 100), u(45, 55), u(5, 7)
    bosses = [(x, u(-8, 8)) for x in (-w / 3, 0.0, w / 3)]
    height = u(12, 18)
    solid = union(extrude(rectangle(w, d), t), *(cylinder(8.0, height, (x, y, height / 2)) for x, y in bosses))
    return difference(solid, *(cylinder(4.0, 3 * height, (x, y, 0)) for x, y in bosses))


# --- round --------------------------------------------------------------------------------------------------------


@_part("round")
def plain_cylinder(u: Uniform) -> Manifold:
    return cylinder(u(15, 20), u(40, 60))


@_part("round")
def stepped_shaft(u: Uniform) -> Manifold:
    """A turned shaft: three diameters with 45-degree chamfers at both ends."""
    r1, r2, r3, c = u(14, 16), u(10, 12), u(6, 8), 1.5
    l1, l2, l3 = u(15, 20), u(25, 30), u(20, 25)
    z1, z2 = l1, l1 + l2
    z3 = z2 + l3
    outline = [
        (0, 0),
        (r1 - c, 0),
        (r1, c),
        (r1, z1),
        (r2, z1),
        (r2, z2),
        (r3, z2),
        (r3, z3 - c),
        (r3 - c, z3),
        (0, z3),
    ]
    return revolve(outline)


@_part("round")
def knob(u: Uniform) -> Manifold:
    """A puck chamfered on both faces, with a blind centre hole."""
    r, h, c = u(22, 28), u(14, 18), u(3, 4)
    body = revolve([(0, 0), (r - c, 0), (r, c), (r, h - c), (r - c, h), (0, h)])
    return difference(body, cylinder(u(4, 6), h, (0, 0, h * 0.5 + 3)))


@_part("round")
def flange(u: Uniform) -> Manifold:
    """A disc with a hub, a bore and a circle of six bolt holes."""
    r, t, hub, hub_h = u(38, 42), u(6, 8), u(15, 18), u(18, 24)
    solid = union(cylinder(r, t, (0, 0, t / 2)), cylinder(hub, hub_h, (0, 0, hub_h / 2)))
    holes = [
        cylinder(3.5, 3 * t, (0.75 * r * math.cos(a), 0.75 * r * math.sin(a), 0)) for a in np.arange(6) * math.pi / 3
    ]
    return difference(solid, cylinder(hub * 0.55, 3 * hub_h), *holes)


@_part("round")
def keyed_shaft(u: Uniform) -> Manifold:
    """A shaft along x with a keyway milled into its top."""
    r, length, key = u(9, 11), u(80, 100), u(3, 4)
    keyway = box((length * 0.4, key, r), (length * 0.15, 0, r - key * 0.6 + r / 2))
    return difference(cylinder(r, length, axis="x"), keyway)


@_part("round")
def pipe_tee(u: Uniform) -> Manifold:
    """Two bored cylinders joined at a right angle."""
    r, wall, length = u(11, 13), u(2.5, 3), u(70, 85)
    branch, rb = length * 0.45, r * 0.7  # a narrower branch: its rim meets the run at 45 degrees or more
    outside = union(cylinder(r, length, axis="x"), cylinder(rb, branch, (0, 0, branch / 2)))
    inside = union(cylinder(r - wall, 2 * length, axis="x"), cylinder(rb - wall, branch, (0, 0, branch / 2 + 1)))
    return difference(outside, inside)


@_part("round")
def hex_nut(u: Uniform) -> Manifold:
    """A hexagonal nut chamfered at 45 degrees on both faces (a 30-degree chamfer would sit on the sharpness
    threshold)."""
    flats, h = u(28, 32), u(12, 16)
    corner = flats / math.sqrt(3)
    inner, outer = flats / 2 * 0.95, corner * 1.05
    rise = outer - inner
    chamfer = revolve([(0, 0), (inner, 0), (outer, rise), (outer, h - rise), (inner, h), (0, h)])
    nut = extrude(regular_polygon(6, corner), h) ^ chamfer
    return difference(nut, cylinder(flats * 0.28, 3 * h))


@_part("round")
def hex_bolt(u: Uniform) -> Manifold:
    """A hexagon head on a shank with a chamfered tip, lying along x."""
    flats, head, r, length = u(18, 22), u(7, 9), u(5, 6), u(55, 70)
    shank = revolve([(0, 0), (r, 0), (r, length - 1.2), (r - 1.2, length), (0, length)])
    bolt = union(extrude(regular_polygon(6, flats / math.sqrt(3)), head, -head + 0.01), shank)
    return along(bolt, "x")
