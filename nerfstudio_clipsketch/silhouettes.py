"""The object's silhouettes in the training views, which the visual hull is carved from.

They come from the first of these a capture has:

- its object masks: nerfstudio's per-frame ``mask_path`` (the dataparser's ``mask_filenames``), white on the object;
  the user's word, taken as they are (a view whose mask is empty shows nothing of the object and is left out);
- an alpha channel with transparency (rendered objects): alpha above 0.5 (:func:`alpha_silhouettes`);
- a uniform background (a studio backdrop, a render composited on white): the pixels whose colour differs from it,
  provided most views' borders are background (:func:`masks_separable`); photographs of a room are not separable.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from nerfstudio_clipsketch.strokes import onto_paper


def foreground_mask(image: Float[Tensor, "H W C"], background: Float[Tensor, "3"], tolerance: float = 0.1) -> Tensor:
    """The object's pixels: alpha above 0.5 where the image has transparency, else a colour differing from the
    background by more than ``tolerance`` in some channel."""
    if image.shape[-1] == 4 and bool((image[..., 3] < 0.99).any()):
        return image[..., 3] > 0.5
    return (image[..., :3] - background.to(image)).abs().amax(-1) > tolerance


def masks_separable(masks: Bool[Tensor, "N H W"], max_border: float = 0.05, min_views: float = 0.9) -> bool:
    """Whether the masks look like an object on a uniform background: in most views, almost none of the border is
    foreground and the object covers something but not everything."""
    border = torch.cat([masks[:, 0], masks[:, -1], masks[:, :, 0], masks[:, :, -1]], dim=1).float().mean(1)
    area = masks.float().mean((1, 2))
    good = (border <= max_border) & (area > 1e-4) & (area < 0.9)
    return bool(good.float().mean() >= min_views)


def alpha_silhouettes(dataset, sizes: Sequence[Tuple[int, int]]) -> Optional[List[Tensor]]:
    """Alpha above one half in every view of a nerfstudio ``InputDataset`` whose image files all have transparency
    and the ``(height, width)`` they were loaded at (not undistorted since); else None. nerfstudio composites alpha
    onto its ``alpha_color`` when it loads images, so a bright face on white would otherwise read as background."""
    from concurrent.futures import ThreadPoolExecutor

    def alpha(index: int) -> Optional[Tensor]:
        image = dataset.get_numpy_image(index)
        if image.shape[-1] != 4 or tuple(image.shape[:2]) != tuple(sizes[index]):
            return None
        return torch.from_numpy(image[..., 3] > 127) if bool((image[..., 3] < 255).any()) else None

    first = alpha(0) if len(sizes) else None
    if first is None:  # photos without transparency: one file read, not all
        return None
    with ThreadPoolExecutor(max_workers=2) as pool:  # decoding releases the GIL, as nerfstudio's own caching does
        rest = list(pool.map(alpha, range(1, len(sizes))))
    return None if any(mask is None for mask in rest) else [first, *rest]


def on_paper(
    images: Sequence[Float[Tensor, "H W C"]], background: Float[Tensor, "3"], masks: Optional[Sequence[Tensor]] = None
) -> List[Tensor]:
    """The images as RGB over ``background``: transparent pixels composited over it and, with ``masks``, everything
    off the object painted with it (so edges are only the object's and its outline's)."""
    return [
        onto_paper(image.cpu().float(), background, None if masks is None else masks[i].reshape(*image.shape[:2], 1))
        for i, image in enumerate(images)
    ]


def training_silhouettes(
    images: Sequence[Float[Tensor, "H W C"]],
    background: Float[Tensor, "3"],
    masks: Optional[Sequence[Tensor]] = None,
) -> Tuple[Optional[Bool[Tensor, "N H W"]], str]:
    """The silhouettes ``[N, H, W]`` of ``images`` (RGB or RGBA in [0, 1]): their ``masks`` (``[H, W]`` or ``[H, W, 1]``
    each) when the capture has them, else :func:`foreground_mask` over ``background`` when it separates the object
    in most views; or None and why not."""
    if masks is not None:
        return torch.stack([mask.cpu().reshape(mask.shape[0], mask.shape[1]).bool() for mask in masks]), "masks"
    found = torch.stack([foreground_mask(image.cpu().float(), background.cpu()) for image in images])
    if not masks_separable(found):
        return None, "the images' backgrounds are not uniform enough to separate the object"
    return found, "colour"
