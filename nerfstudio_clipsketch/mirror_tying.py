"""Strokes tied in mirrored pairs across a plane: only half the control points are free parameters, and the sketch
stays symmetric however it is optimised (the plane: :mod:`nerfstudio_clipsketch.symmetry`).

Free control points ``[K, 3]`` are expanded into the sketch's ``[C, D + 1, 3]``: each control point is a free point,
its projection onto the plane or its reflection (``p - c (n · p - d) n``, ``c`` = 0, 1, 2), a gather and a
multiply-add (differentiable, no host synchronisation).
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from nerfstudio_clipsketch.symmetry import Plane, SymmetryError


class MirrorTying:
    """Strokes tied across a plane (in the control points' frame), each stroke in one group: ``pairs`` ``(a, b,
    reverse)``, stroke b the reflection of stroke a (backwards when ``reverse``, so a tied stroke keeps its
    direction); ``crossing`` strokes, symmetric about the plane and traversed backwards (``P[D - k] = R(P[k])``, an
    odd middle point on the plane); ``in_plane`` strokes, every control point on the plane. ``num_free_points`` rows
    of free points hold ``num_free_parameters`` degrees of freedom (a point projected onto the plane has two)."""

    def __init__(
        self, plane: Plane, num_curves: int, degree: int, pairs: Sequence[Tuple[int, int, bool]] = (),
        crossing: Sequence[int] = (), in_plane: Sequence[int] = (),
    ) -> None:  # fmt: skip
        self.plane, self.num_curves, self.degree = plane, num_curves, degree
        self.pairs = [(int(a), int(b), bool(r)) for a, b, r in pairs]
        self.crossing, self.in_plane = [int(i) for i in crossing], [int(i) for i in in_plane]
        listed = [i for a, b, _ in self.pairs for i in (a, b)] + self.crossing + self.in_plane
        if sorted(listed) != list(range(num_curves)):
            raise SymmetryError(f"every one of {num_curves} strokes must be tied exactly once, got {sorted(listed)}")
        width = degree + 1
        source = torch.empty(num_curves, width, dtype=torch.long)
        coef = torch.zeros(num_curves, width)
        self.partner = torch.full((num_curves,), -1, dtype=torch.long)
        self.reverse = torch.zeros(num_curves, dtype=torch.bool)
        row = 0
        for a, b, reverse in self.pairs:
            source[a] = torch.arange(row, row + width)
            source[b] = source[a].flip(0) if reverse else source[a]
            coef[b] = 2.0
            self.partner[a], self.partner[b] = b, a
            self.reverse[a] = self.reverse[b] = reverse
            row += width
        half = width // 2
        for i in self.crossing:
            rows = torch.arange(row, row + half)
            source[i, :half], source[i, width - half :] = rows, rows.flip(0)
            coef[i, width - half :] = 2.0
            if width % 2:
                source[i, half], coef[i, half] = row + half, 1.0
            row += half + width % 2
        for i in self.in_plane:
            source[i], coef[i] = torch.arange(row, row + width), 1.0
            row += width
        self.num_free_points, self.num_free_parameters = row, 3 * row - int((coef == 1.0).sum())
        counts = torch.bincount(source.flatten(), minlength=row).float()[:, None]
        self._source, self._coef, self._counts, self._normal = source, coef, counts, plane.normal

    def to(self, device: Union[str, torch.device]) -> "MirrorTying":
        """Index maps on ``device`` (once, where the free parameters live)."""
        maps = (self._source, self._coef, self._counts, self._normal)
        self._source, self._coef, self._counts, self._normal = (t.to(device) for t in maps)
        return self

    def _map(self, points: Float[Tensor, "num_curves degree_plus_one 3"]) -> Tensor:
        """Each entry's map: identity, projection or reflection, each its own least-squares inverse (for both ways)."""
        n = self._normal.to(points)
        return points - (self._coef.to(points) * (points @ n - self.plane.offset))[..., None] * n

    def expand(self, free: Float[Tensor, "num_free_points 3"]) -> Float[Tensor, "num_curves degree_plus_one 3"]:
        """The full control points, differentiable in ``free`` and symmetric by construction."""
        assert free.shape == (self.num_free_points, 3), free.shape
        return self._map(free[self._source.to(free.device)])

    def free(self, control_points: Float[Tensor, "num_curves degree_plus_one 3"]) -> Float[Tensor, "num_free_points 3"]:
        """The free points whose expansion is nearest to ``control_points`` in least squares (a pair's free stroke
        is the mean of one stroke and its partner's reflection): exact for a symmetric sketch, and a projection
        onto symmetric sketches for any other."""
        shape = (self.num_curves, self.degree + 1, 3)
        assert control_points.shape == shape, (control_points.shape, shape)
        mapped = self._map(control_points).reshape(-1, 3)
        source = self._source.to(mapped.device).flatten()
        sums = torch.zeros(self.num_free_points, 3, dtype=mapped.dtype, device=mapped.device)
        return sums.index_add(0, source, mapped) / self._counts.to(mapped)

    def rows(self, strokes: Int[Tensor, "num_strokes"]) -> Int[Tensor, "num_rows"]:
        """The free rows that ``strokes`` are made of (e.g. to reset their optimiser state)."""
        return torch.unique(self._source[torch.as_tensor(strokes, device=self._source.device)].flatten())

    @torch.no_grad()
    def reseed(
        self, free: Float[Tensor, "num_free_points 3"], strokes: Int[Tensor, "num_strokes"],
        new_strokes: Float[Tensor, "num_strokes degree_plus_one 3"],
    ) -> Tuple[Float[Tensor, "num_free_points 3"], Int[Tensor, "num_rows"]]:  # fmt: skip
        """Free points with ``strokes`` replaced by ``new_strokes`` (the tying's frame), and the rows that changed.

        A re-seeded stroke of a pair becomes its new stroke exactly and its partner that stroke's reflection (both
        of a pair re-seeded: their least-squares mean). A crossing or in-plane stroke cannot leave its group, so it
        becomes the symmetric stroke nearest to its new one; re-seed a paired stroke to place a stroke freely.
        """
        strokes = torch.as_tensor(strokes, dtype=torch.long).cpu()
        if new_strokes.shape != (len(strokes), self.degree + 1, 3):
            raise SymmetryError(f"{len(strokes)} re-seeded strokes need shape {(len(strokes), self.degree + 1, 3)}, "
                                f"got {tuple(new_strokes.shape)}")  # fmt: skip
        full, new = self.expand(free.detach()).clone(), new_strokes.to(free)
        full[strokes.to(full.device)] = new
        partner = self.partner[strokes]
        lone = (partner >= 0) & ~torch.isin(partner, strokes)
        mirrored = self.plane.reflect(new[lone.to(full.device)])
        flip = self.reverse[strokes][lone].to(full.device)[:, None, None]
        full[partner[lone].to(full.device)] = torch.where(flip, mirrored.flip(1), mirrored)
        rows, out = self.rows(strokes), free.detach().clone()
        out[rows] = self.free(full)[rows]
        return out, rows

    def describe(self) -> str:
        total = 3 * self.num_curves * (self.degree + 1)
        return (f"{len(self.pairs)} mirrored pairs, {len(self.crossing)} strokes across and {len(self.in_plane)} in "
                f"the plane {self.plane}: {self.num_free_parameters} of {total} parameters free")  # fmt: skip

    @classmethod
    @torch.no_grad()
    def symmetrise(cls, control_points: Float[Tensor, "num_curves degree_plus_one 3"], plane: Plane,
                   tolerance: float = 0.05) -> Tuple["MirrorTying", Float[Tensor, "num_free_points 3"]]:  # fmt: skip
        """Tie a sketch's strokes across ``plane`` and make it symmetric, keeping its number of strokes; returns the
        tying and the free points (the input's device and dtype).

        Distances are root-mean-square over control points; ``tolerance`` is a fraction of the control points'
        bounding-box diagonal. Greedily, nearest first and within the tolerance, a stroke is paired with the stroke
        nearest its mirror image (either direction), or made crossing or in-plane when it nearly is its own: these
        move to the least-squares mean, little. Of the rest, a stroke with ends on both sides becomes crossing; the
        others pair up, nearest first, the lower-indexed stroke staying and its partner replaced by its mirror image
        (an initialisation lists its most important strokes first); an odd one out becomes crossing or in-plane.
        """
        cp = control_points.detach().cpu().double().clone()
        num_curves, width = cp.shape[:2]
        mirrored, flat = plane.reflect(cp), cp.flatten(0, 1)
        same = torch.cdist(cp.flatten(1), mirrored.flatten(1)) / math.sqrt(width)  # [C, C]
        backward = torch.cdist(cp.flatten(1), mirrored.flip(1).flatten(1)) / math.sqrt(width)
        limit = tolerance * max(float((flat.amax(0) - flat.amin(0)).norm()), 1e-12)
        a, b = torch.triu_indices(num_curves, num_curves, offset=1)
        d = torch.arange(num_curves)
        # Candidate ties (cost, kind, i, j), kinds 0 = pair, 1 = crossing, 2 = in the plane.
        costs = torch.cat([torch.minimum(same, backward)[a, b], backward.diagonal(), same.diagonal()])
        kinds = torch.cat([torch.zeros_like(a), torch.ones_like(d), torch.full_like(d, 2)])
        firsts, seconds = torch.cat([a, d, d]), torch.cat([b, d, d])
        groups: Tuple[List[Tuple[int, int, bool]], List[int], List[int]] = ([], [], [])
        tied = [False] * num_curves

        def tie(kind: int, i: int, j: int) -> None:
            tied[i] = tied[j] = True
            groups[kind].append((i, j, bool(backward[i, j] < same[i, j])) if kind == 0 else i)  # type: ignore

        order = torch.argsort(costs, stable=True)
        ranked = list(zip(*(t[order].tolist() for t in (costs, kinds, firsts, seconds))))
        for cost, kind, i, j in ranked:
            if cost <= limit and not tied[i] and not tied[j]:
                tie(kind, i, j)
        crosses = (plane.signed_distance(cp[:, 0]) * plane.signed_distance(cp[:, -1]) < 0).tolist()
        for i in [i for i in range(num_curves) if crosses[i] and not tied[i]]:
            tie(1, i, i)
        for _, kind, i, j in ranked:
            if kind == 0 and not tied[i] and not tied[j]:
                tie(0, i, j)
                cp[j] = mirrored[i].flip(0) if groups[0][-1][2] else mirrored[i]
        for i in [i for i in range(num_curves) if not tied[i]]:
            tie(1 if backward[i, i] <= same[i, i] else 2, i, i)
        tying = cls(plane, num_curves, width - 1, *groups).to(control_points.device)
        return tying, tying.free(cp.to(control_points.device)).to(control_points.dtype)

    def state(self) -> dict:
        """The tying as plain numbers and lists (saved with checkpoints; :meth:`from_state` rebuilds it)."""
        plane, pairs = [*self.plane.normal.tolist(), self.plane.offset], [list(p) for p in self.pairs]
        shape = {"num_curves": self.num_curves, "degree": self.degree}
        return {"plane": plane, **shape, "pairs": pairs, "crossing": self.crossing, "in_plane": self.in_plane}

    @classmethod
    def from_state(cls, state: dict) -> "MirrorTying":
        plane = Plane(torch.tensor(state["plane"][:3], dtype=torch.float64), float(state["plane"][3]))
        pairs = [(int(a), int(b), bool(r)) for a, b, r in state["pairs"]]
        return cls(plane, int(state["num_curves"]), int(state["degree"]), pairs, state["crossing"], state["in_plane"])
