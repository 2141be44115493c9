"""How strokes look: colours, and the stroke width's units.

Colours are parsed by :func:`parse_color`; ``auto`` strokes contrast with the background (:func:`contrasting_color`).

A stroke's width has one unit outside this module, *stroke pixels* (``--pipeline.model.stroke-width``): pixels of the
view drawn 224 pixels across its shorter side, as CLIP sees it, so that strokes take the same share of the view
whatever the photos' resolution. Inside the renderers it is the standard deviation ``sigma`` of the Gaussians that
draw the stroke, in world units. The two are converted here and nowhere else: :func:`world_per_stroke_pixel` says how
many world units one stroke pixel is for a set of training cameras, and :func:`stroke_sigma` turns a full width at
half opacity (``2 sqrt(2 ln 2) sigma``) into ``sigma``; :class:`StrokeStyle` holds a model's width and colours. A
saved :class:`~nerfstudio_clipsketch.sketch.Sketch` stores the full width in world units.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Optional, Tuple, Union

import torch
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor, nn

from nerfstudio_clipsketch import curves

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""Full width at half maximum of a Gaussian, in standard deviations."""


def stroke_sigma(width: Union[float, Tensor]) -> Union[float, Tensor]:
    """Standard deviation of the Gaussians that draw a stroke ``width`` wide (its full width at half opacity, for an
    opaque stroke: ``2 sqrt(2 ln 2) sigma``), in the same units."""
    return width / FWHM_PER_SIGMA


REFERENCE_VIEW_PIXELS = 224
"""Stroke pixels are pixels of a view this many pixels across its shorter side (CLIP's input size)."""


def world_per_stroke_pixel(distance: float, cameras) -> float:
    """World units per stroke pixel at ``distance`` from the median of nerfstudio ``cameras`` (its focal length and
    its images' shorter side, in pixels): one pixel of the same view drawn :data:`REFERENCE_VIEW_PIXELS` pixels
    across, whatever the photos' resolution (at the scene centre seen from the median training camera)."""
    focal = float(cameras.fx.reshape(-1).float().median())
    short_side = float(torch.minimum(cameras.width, cameras.height).reshape(-1).float().median())
    return distance / focal * short_side / REFERENCE_VIEW_PIXELS


NAMED_COLORS = {"black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0)}


def parse_color(value: str, what: str) -> Optional[tuple[float, float, float]]:
    """``auto`` → None; ``black``/``white``; ``#rrggbb``; or three floats in [0, 1] like ``0.1,0.2,0.3``.

    Raises:
        ValueError: naming ``what``, the value, and the forms allowed.
    """
    text = value.strip().lower()
    if text == "auto":
        return None
    if text in NAMED_COLORS:
        return NAMED_COLORS[text]
    if re.fullmatch(r"#[0-9a-f]{6}", text):
        return tuple(int(text[i : i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]
    try:
        rgb = tuple(float(p) for p in re.split(r"[,\s]+", text))
    except ValueError:
        rgb = ()
    if len(rgb) == 3 and all(0.0 <= c <= 1.0 for c in rgb):
        return rgb  # type: ignore[return-value]
    raise ValueError(
        f"Cannot read {what} {value!r}: use 'auto', 'black', 'white', '#rrggbb' or three numbers in [0, 1] "
        "like '0.1,0.2,0.3'."
    )


def contrasting_color(background: Float[Tensor, "3"]) -> Float[Tensor, "3"]:
    """Black strokes on a light background, white ones on a dark one (by luma)."""
    light = (background * torch.tensor([0.299, 0.587, 0.114], device=background.device)).sum() > 0.5
    return torch.where(light, torch.zeros(3, device=background.device), torch.ones(3, device=background.device))


def check_rgb(value: Sequence[float], name: str) -> tuple[float, float, float]:
    rgb = tuple(float(c) for c in value)
    if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
        raise ValueError(f"{name} must be three floats in [0, 1], got {value!r}")
    return rgb  # type: ignore[return-value]


def photo_foreground(
    image: Float[Tensor, "*batch H W 3"], background: Float[Tensor, "3"], low: float = 0.03, high: float = 0.1
) -> Float[Tensor, "*batch H W 1"]:
    """How much each pixel is object rather than the photo's uniform ``background``: 0 within ``low`` of it in every
    channel, 1 beyond ``high`` in some channel (the visual hull's silhouettes use ``high``), linear between."""
    deviation = (image - background).abs().amax(-1, keepdim=True)
    return ((deviation - low) / (high - low)).clamp(0.0, 1.0)


def onto_paper(image: Tensor, paper: Float[Tensor, "3"], mask: Optional[Tensor] = None) -> Tensor:
    """An image (``[..., H, W, 3 or 4]`` in [0, 1]) as RGB: transparent pixels composited over ``paper`` and, with an
    object ``mask`` (``[..., H, W, 1]``, true on the object), everything off the object painted with it."""
    if image.shape[-1] == 4:
        alpha = image[..., 3:4]
        image = image[..., :3] * alpha + paper * (1.0 - alpha)
    if mask is not None:
        image = torch.where(mask.to(image.device).bool(), image, paper)
    return image


class StrokeStyle(nn.Module):
    """How a model's strokes look, as persistent buffers (a checkpoint restores them exactly): the width in stroke
    pixels (the unit of ``--pipeline.model.stroke-width`` and of the viewer's slider) beside the size of one stroke
    pixel in world units, which the training cameras fix (:meth:`fit`), the stroke colour, the background and the
    opacity. :meth:`sigma` is the one place the width becomes the Gaussians' standard deviation.

    Args:
        width: stroke width in stroke pixels.
        color, background: ``auto`` or a colour :func:`parse_color` reads; ``auto`` strokes contrast with the
            background, an ``auto`` background is white paper or the data's (:meth:`fit`).
        opacity: peak opacity of the stroke Gaussians.
        world_per_px: world units per stroke pixel until :meth:`fit` sets it from the cameras.
    """

    def __init__(self, width: float, color: str, background: str, opacity: float, world_per_px: float) -> None:
        super().__init__()
        self._color = parse_color(color, "stroke colour")
        self._background = parse_color(background, "background colour")
        self.opacity = float(opacity)
        self.register_buffer("width_px", torch.tensor(float(width)))
        self.register_buffer("world_per_px", torch.tensor(float(world_per_px)))
        self.register_buffer("background", torch.tensor(self._background or NAMED_COLORS["white"]))
        self.register_buffer("color", self._stroke_color())
        # The photos' own uniform background where it is repainted with the paper's colour (set by fit: the data
        # decides it at every set-up, so checkpoints do not carry it).
        self.register_buffer("photo_background", None, persistent=False)

    def _stroke_color(self) -> Tensor:
        if self._color is not None:
            return torch.tensor(self._color, device=self.background.device)
        return contrasting_color(self.background)

    @torch.no_grad()
    def fit(self, world_per_px: float, background: Optional[Tensor] = None, uniform: bool = False) -> None:
        """Fix what the data decides: the world size of a stroke pixel, and the paper. An ``auto`` background is white
        paper when the photos show an object on a uniform ``background`` (``uniform``), whose background is then
        repainted white in the targets, as CLIPasso masks its photos onto white; otherwise it is the photos' own
        ``background``. An ``auto`` stroke colour contrasts with the paper."""
        self.world_per_px.fill_(world_per_px)
        if self._background is None and background is not None and not uniform:
            self.background.copy_(background.to(self.background))
        self.color.copy_(self._stroke_color())
        repaint = uniform and background is not None
        repaint = repaint and not torch.allclose(background.to(self.background), self.background, atol=0.02)
        self.photo_background = background.to(self.background).clone() if repaint else None

    def composite(self, image: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Images (any leading shape; uint8 or float) as RGB in [0, 1], composited over the paper where they have
        alpha or outside their object ``mask`` (``[..., H, W, 1]``, nerfstudio's per-frame ``mask_path``: true on the
        object), and with a uniform photo backdrop of another colour repainted (:meth:`fit`): the targets the strokes
        are compared with."""
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        image = onto_paper(image.to(self.background.device), self.background, mask)
        if self.photo_background is not None:
            alpha = photo_foreground(image, self.photo_background)
            image = image * alpha + self.background * (1.0 - alpha)
        return image

    def backdrop(self) -> Tensor:
        """The colour of the photos' background: their uniform backdrop where it is repainted, else the paper's."""
        return self.photo_background if self.photo_background is not None else self.background

    def width(self) -> float:
        """The stroke width, in stroke pixels."""
        return float(self.width_px)

    @torch.no_grad()
    def set_width(self, width: float) -> None:
        """Draw strokes ``width`` stroke pixels wide from now on."""
        if not width > 0:
            raise ValueError(f"stroke width must be positive (pixels), got {width}")
        self.width_px.fill_(width)

    def world_width(self) -> Tensor:
        """Full width at half opacity of a stroke, in world units."""
        return self.width_px * self.world_per_px

    def sigma(self) -> Tensor:
        """Standard deviation of the stroke Gaussians, in world units (a tensor: no host sync in a training step)."""
        return stroke_sigma(self.world_width())


def stroke_gaussians(
    means: Float[Tensor, "num_gaussians 3"],
    sigma: Union[float, Tensor],
    opacity: float,
    color: Union[Sequence[float], Tensor],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The Gaussians that draw strokes through ``means``: ``(means, scales, opacities, colors)`` with one ``sigma``,
    ``opacity`` and ``color`` for all, ready for :func:`nerfstudio_clipsketch.rendering.render`."""
    n, like = means.shape[0], dict(device=means.device, dtype=means.dtype)
    scales = torch.as_tensor(sigma, **like).expand(n)
    opacities = torch.full((n,), float(opacity), **like)
    colors = torch.as_tensor(color, **like).expand(n, 3)
    return means, scales, opacities, colors


DOTTED_SPACING = 1.5
"""Gaussians further apart than this many standard deviations leave visible gaps in a stroke."""


class StrokeSampler:
    """Where a fixed number of Gaussians sit along the curves: shared among the curves by length and spaced evenly in
    arc length (re-run between steps as the curves move). Says once when they have grown so far apart that strokes
    look dotted, and how many to use instead."""

    def __init__(self) -> None:
        self.warned = False

    @torch.no_grad()
    def __call__(
        self, world: Float[Tensor, "C D 3"], budget: int, sigma: Tensor, step: Optional[int] = None
    ) -> Tuple[Tensor, Tensor]:
        """``(sample_curve, sample_t)`` ``[budget]``: Gaussian k is curve ``sample_curve[k]`` at ``sample_t[k]``;
        ``sigma``: the Gaussians' size; ``step``: the training step (None: no warning)."""
        lengths = curves.curve_lengths(world)
        counts = curves.allocate_samples(lengths, budget).to(world.device)
        spacing = (lengths / (counts - 1)).max()
        if step is not None and not self.warned and bool(spacing > DOTTED_SPACING * sigma):
            self.warned = True
            needed = int(lengths.sum() / (sigma * world.shape[0])) + 2
            CONSOLE.log(f"[yellow]clipsketch: at step {step} the sketch's Gaussians are up to {float(spacing):.3g} "
                        f"apart, more than {DOTTED_SPACING:g} times their size ({float(sigma):.3g}): the sketch looks "
                        f"dotted. Use --pipeline.model.gaussians-per-curve {needed} or more.")  # fmt: skip
        return curves.arc_length_samples(world, counts)
