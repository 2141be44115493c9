"""Mirror symmetry: planes (parsing, reflection), plane detection on point sets, and strokes tied across a plane."""

from __future__ import annotations

import math

import pytest
import torch

from nerfstudio_clipsketch import curves
from nerfstudio_clipsketch.dataparsers.builtin import builtin_curves
from nerfstudio_clipsketch.hull import surface
from nerfstudio_clipsketch.mirror_tying import MirrorTying
from nerfstudio_clipsketch.symmetry import (
    GOOD_SCORE,
    Plane,
    SymmetryError,
    find_plane,
    parse_option,
    symmetry_score,
)

GRID = 48


def shape_surface(symmetric: bool) -> torch.Tensor:
    """Surface voxel centres of a box with bumps, in [-1, 1]^3: mirrored bumps keep only the plane x = 0 (the +y
    bumps break y, the top one z), moved bumps leave no symmetry at all."""
    c = (torch.arange(GRID, dtype=torch.float64) + 0.5) / GRID * 2 - 1
    x, y, z = torch.meshgrid(c, c, c, indexing="ij")
    box = (x.abs() < 0.8) & (y.abs() < 0.45) & (z.abs() < 0.3)
    if symmetric:
        side = ((x.abs() - 0.5).abs() < 0.15) & (y > 0.4) & (y < 0.8) & (z.abs() < 0.2)
        top = (x.abs() < 0.3) & (y.abs() < 0.2) & (z > 0.25) & (z < 0.6)
        return c[surface(box | side | top).nonzero()]
    side = ((x - 0.5).abs() < 0.15) & (y > 0.4) & (y < 0.8) & (z.abs() < 0.2)
    top = ((x + 0.3).abs() < 0.3) & ((y - 0.1).abs() < 0.2) & (z > 0.25) & (z < 0.6)
    end = (x < -0.7) & (x > -0.95) & ((y + 0.2).abs() < 0.15) & (z > -0.3) & (z < 0.1)
    return c[surface(box | side | top | end).nonzero()]


def moved(points: torch.Tensor, seed: int = 0):
    """``points`` under a random rotation and translation (so no candidate normal is exact), with a little noise,
    and the map applied to them."""
    g = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    shift = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    noise = 0.002 * torch.randn(points.shape, generator=g, dtype=torch.float64)
    return points @ rotation.T + shift + noise, rotation, shift


def random_strokes(count: int, degree: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    starts = torch.randn(count, 1, 3, generator=g)
    steps = torch.linspace(0, 1, degree + 1)[None, :, None]
    wobble = 0.05 * torch.randn(count, degree + 1, 3, generator=g)
    return starts + 0.3 * steps * torch.randn(count, 1, 3, generator=g) + wobble


def assert_tied(tying: MirrorTying, full: torch.Tensor, atol: float = 1e-6) -> None:
    """Pairs are exact mirrors, crossing strokes symmetric backwards, in-plane strokes on the plane."""
    plane, last = tying.plane, tying.degree
    for a, b, reverse in tying.pairs:
        mirrored = plane.reflect(full[a])
        torch.testing.assert_close(full[b], mirrored.flip(0) if reverse else mirrored, atol=atol, rtol=0)
    for i in tying.crossing:
        torch.testing.assert_close(full[i].flip(0), plane.reflect(full[i]), atol=atol, rtol=0)
        if (last + 1) % 2:
            assert abs(float(plane.signed_distance(full[i, last // 2]))) < atol
    for i in tying.in_plane:
        assert float(plane.signed_distance(full[i]).abs().max()) < atol


# ----------------------------------------------------------------------------------------------------------------------
# Planes


def test_reflection_is_an_involution_that_fixes_the_plane_and_crosses_it_at_right_angles():
    plane = Plane(torch.tensor([1.0, -2.0, 0.5]), 0.7)
    points = torch.randn(5, 7, 3, dtype=torch.float64)
    reflected = plane.reflect(points)
    torch.testing.assert_close(plane.reflect(reflected), points)
    torch.testing.assert_close(plane.signed_distance(reflected), -plane.signed_distance(points))
    across = reflected - points  # along the normal, twice the distance
    torch.testing.assert_close(across, -2 * plane.signed_distance(points)[..., None] * plane.normal)
    on_plane = points - plane.signed_distance(points)[..., None] * plane.normal
    torch.testing.assert_close(plane.reflect(on_plane), on_plane)


def test_planes_parse_from_axes_and_coefficients_with_one_spelling_each():
    centre = torch.tensor([12.8, 13.2, 5.6])
    x = Plane.parse("x", centre)
    assert x.normal.tolist() == [1.0, 0.0, 0.0] and x.offset == pytest.approx(12.8)
    assert Plane.parse(" Z ").offset == 0.0 and Plane.parse("z").normal.tolist() == [0.0, 0.0, 1.0]
    general = Plane.parse("1,1,0,2")
    torch.testing.assert_close(general.normal, torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64) / math.sqrt(2))
    assert general.offset == pytest.approx(math.sqrt(2))
    flipped = Plane.parse("-2,0,0,3")  # the same plane as x = -1.5
    assert flipped.normal.tolist() == [1.0, 0.0, 0.0] and flipped.offset == pytest.approx(-1.5)
    assert str(flipped) == "x = -1.5"
    assert parse_option("auto") == "auto" and parse_option("OFF") == "off"
    assert isinstance(parse_option("y"), Plane)


@pytest.mark.parametrize("text", ["w", "1,2,3", "1,a,0,0", "0,0,0,1", "nan,0,0,1", ""])
def test_a_bad_plane_raises_a_typed_error_naming_the_value_and_the_forms(text):
    with pytest.raises(SymmetryError) as error:
        Plane.parse(text)
    assert repr(text) in str(error.value) and "'x', 'y' or 'z'" in str(error.value)
    with pytest.raises(SymmetryError, match="'auto', 'off'"):
        parse_option("sometimes")


def test_a_plane_moved_into_the_models_frame_reflects_the_same_points():
    plane, centre, scale = Plane(torch.tensor([0.3, 0.9, -0.2]), 4.0), torch.tensor([12.8, 13.2, 5.6]), 8.0
    world = torch.randn(20, 3, dtype=torch.float64) * 3 + centre.double()
    framed = plane.in_frame(centre, scale)
    in_frame = (world - centre.double()) / scale
    torch.testing.assert_close(framed.reflect(in_frame), (plane.reflect(world) - centre) / scale)


# ----------------------------------------------------------------------------------------------------------------------
# Finding a plane


def test_a_symmetric_hull_has_its_plane_found_to_within_a_degree():
    points, rotation, shift = moved(shape_surface(symmetric=True))
    diagonal = float((points.amax(0) - points.amin(0)).norm())
    fit = find_plane(points, diagonal)
    truth = Plane(rotation[:, 0], float(rotation[:, 0] @ shift))  # the rotated plane x = 0
    assert fit.plane is not None, fit.describe()
    assert fit.score <= GOOD_SCORE / 2
    assert fit.plane.angle(truth) < 1.0, (str(fit.plane), str(truth))
    assert abs(fit.plane.offset - truth.offset) < 0.1 * 2 / GRID  # a tenth of a voxel
    assert "mirror-symmetric about" in fit.describe()


def test_a_hull_missing_a_piece_on_one_side_still_has_its_plane_found_to_a_tenth_of_a_voxel():
    points = shape_surface(symmetric=True)
    hole = (points[:, 0] > 0.2) & (points[:, 1] < 0.0) & (points[:, 2] > 0.0)  # 9 % of the points, on one side
    points, rotation, shift = moved(points[~hole])
    # The hole tilts the principal axes and moves the centroid off the plane, and nearest-neighbour ICP slides along
    # the faces parallel to the normal (a voxel off): only a search on the score itself lands on the plane.
    fit = find_plane(points, float((points.amax(0) - points.amin(0)).norm()))
    truth = Plane(rotation[:, 0], float(rotation[:, 0] @ shift))
    assert fit.plane is not None, fit.describe()
    assert fit.plane.angle(truth) < 0.25 and abs(fit.plane.offset - truth.offset) < 0.1 * 2 / GRID


def test_an_asymmetric_hull_has_no_plane_and_says_so():
    points, _, _ = moved(shape_surface(symmetric=False))
    fit = find_plane(points, float((points.amax(0) - points.amin(0)).norm()))
    assert fit.plane is None
    assert fit.score > 1.5 * GOOD_SCORE  # clearly above, not at the edge
    assert fit.describe().startswith("not mirror-symmetric") and str(fit.best) in fit.describe()


def test_the_built_in_houses_plane_is_found_from_its_curves():
    control_points, _ = builtin_curves()
    points = curves.sample_curves(control_points.double(), 64)
    diagonal = float((points.amax(0) - points.amin(0)).norm())
    fit = find_plane(points, diagonal)
    assert fit.plane is not None and fit.plane.angle(Plane.parse("x")) < 0.5 and abs(fit.plane.offset) < 1e-3


def test_finding_a_plane_needs_points_and_a_diagonal():
    with pytest.raises(SymmetryError, match="at least 4 points, got 2"):
        find_plane(torch.zeros(2, 3), 1.0)
    with pytest.raises(SymmetryError, match="must be positive, got 0.0"):
        find_plane(torch.randn(10, 3), 0.0)


# ----------------------------------------------------------------------------------------------------------------------
# Tied strokes


@pytest.mark.parametrize("degree", [2, 3])
def test_expanded_strokes_are_exact_mirrors_and_free_points_recover_them(degree):
    plane = Plane(torch.tensor([0.2, 1.0, 0.1]), 0.3)
    tying = MirrorTying(plane, 6, degree, pairs=[(4, 0, False), (1, 5, True)], crossing=[2], in_plane=[3])
    width = degree + 1
    assert tying.num_free_points == 2 * width + (width + 1) // 2 + width
    middle = 1 if width % 2 else 0
    assert tying.num_free_parameters == 3 * tying.num_free_points - middle - width  # projected points have two
    free = torch.randn(tying.num_free_points, 3)
    full = tying.expand(free)
    assert full.shape == (6, width, 3)
    assert_tied(tying, full)
    torch.testing.assert_close(tying.expand(tying.free(full)), full)
    # Of an asymmetric sketch, free() keeps the least-squares symmetric part: a pair's mean across the plane.
    noisy = full + 0.1 * torch.randn(full.shape)
    torch.testing.assert_close(tying.free(noisy)[:width], 0.5 * (noisy[4] + plane.reflect(noisy[0])))


def test_every_stroke_must_be_tied_exactly_once():
    plane = Plane.parse("x")
    with pytest.raises(SymmetryError, match="every one of 3 strokes"):
        MirrorTying(plane, 3, 3, pairs=[(0, 1, False)])
    with pytest.raises(SymmetryError, match=r"\[0, 1, 1, 2\]"):
        MirrorTying(plane, 3, 3, pairs=[(0, 1, False)], crossing=[1, 2])


def test_tied_strokes_stay_mirrored_through_optimisation():
    plane = Plane(torch.tensor([1.0, 0.3, -0.2]), 0.1)
    tying, free = MirrorTying.symmetrise(random_strokes(16, 3), plane)
    free = torch.nn.Parameter(free)
    target = random_strokes(16, 3, seed=1)  # not symmetric: the loss pulls every stroke its own way
    optimiser = torch.optim.Adam([free], lr=0.05)
    losses = []
    for _ in range(30):
        full = tying.expand(free)
        loss = (full - target).square().sum() + full.norm(dim=-1).sin().sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]  # the free points did move
    assert_tied(tying, tying.expand(free.detach()))


def test_symmetrising_the_built_in_house_halves_its_control_points_and_keeps_it():
    control_points, names = builtin_curves()
    tying, free = MirrorTying.symmetrise(control_points, Plane.parse("x"))
    full = tying.expand(free)
    torch.testing.assert_close(full, control_points, atol=1e-5, rtol=0)  # symmetric already: nothing moves
    assert tying.num_free_points * 2 == control_points.shape[0] * control_points.shape[1]
    assert len(tying.pairs) == 9 and len(tying.crossing) == 6 and not tying.in_plane
    assert {names[i] for i in tying.crossing} >= {"ridge", "door top"}
    assert {(names[a], names[b]) for a, b, _ in tying.pairs} >= {("door left", "door right")}
    diagonal = float((control_points.flatten(0, 1).amax(0) - control_points.flatten(0, 1).amin(0)).norm())
    assert symmetry_score(full, tying.plane, diagonal) <= 0.01


def test_symmetrising_any_sketch_keeps_its_strokes_and_halves_its_parameters():
    strokes = random_strokes(16, 3)
    plane = Plane.parse("x")
    tying, free = MirrorTying.symmetrise(strokes, plane)
    full = tying.expand(free)
    assert full.shape == strokes.shape
    assert tying.num_free_parameters <= 0.55 * strokes.numel()
    assert_tied(tying, full)
    # Zero up to sampling: the by-length share gives a pair's strokes one sample more or less.
    assert symmetry_score(strokes, plane, 1.0) > 0.05 and symmetry_score(full, plane, 1.0) < 1e-3
    # The strokes that stay in a far-from-symmetric pair (the lower index) keep their shape.
    kept = [a for a, b, _ in tying.pairs if float((strokes[a] - full[a]).abs().max()) < 1e-6]
    assert len(kept) >= len(tying.pairs) // 2


def test_a_reseeded_stroke_takes_its_partner_along_and_leaves_the_rest():
    plane = Plane(torch.tensor([0.0, 1.0, 0.0]), 0.2)
    tying = MirrorTying(plane, 5, 3, pairs=[(0, 3, True), (1, 4, False)], crossing=[2])
    free = torch.randn(tying.num_free_points, 3)
    before = tying.expand(free)
    new = torch.randn(2, 4, 3)
    updated, rows = tying.reseed(free, torch.tensor([3, 2]), new)
    after = tying.expand(updated)
    torch.testing.assert_close(after[3], new[0])  # the re-seeded paired stroke is exactly its new stroke
    assert_tied(tying, after)  # its partner followed; the crossing stroke became the nearest symmetric one
    torch.testing.assert_close(after[2], 0.5 * (new[1] + plane.reflect(new[1]).flip(0)))
    torch.testing.assert_close(after[[1, 4]], before[[1, 4]])
    assert sorted(rows.tolist()) == sorted(tying.rows(torch.tensor([0, 3, 2])).tolist())
    untouched = torch.ones(tying.num_free_points, dtype=torch.bool)
    untouched[rows] = False
    torch.testing.assert_close(updated[untouched], free[untouched])
    with pytest.raises(SymmetryError, match=r"need shape \(1, 4, 3\)"):
        tying.reseed(free, torch.tensor([0]), torch.randn(1, 3, 3))


def test_the_symmetry_score_is_zero_for_a_mirrored_sketch_and_grows_off_the_plane():
    control_points, _ = builtin_curves()
    plane = Plane.parse("x")
    assert symmetry_score(control_points, plane, 3.0) < 1e-3
    shifted = control_points + torch.tensor([0.1, 0.0, 0.0])
    assert symmetry_score(shifted, plane, 3.0) > 0.02
