"""CLIPasso's guidance: compare a rendered sketch with the target view inside a frozen CLIP image encoder.

The loss is CLIPasso's (Vinker et al. 2022): the L2 distance between intermediate activations of the sketch and of
the target (the "geometric" terms, one per layer, weighted), plus ``1 - cos`` between their final embeddings (the
"semantic" term), averaged over the un-augmented pair and ``num_augmentations`` random perspective + crop
augmentations applied identically to sketch and target, at CLIP's input size (both images are first brought to it by
CLIP's own preprocessing, so the loss does not depend on the photos' resolution).

One open_clip model is built once per :class:`ClipGuidance`, frozen and in eval mode. It is deliberately not an
``nn.Module`` attribute of the nerfstudio model, so it is in no optimiser group and not written to checkpoints.
Architectures and weights are found by :mod:`nerfstudio_clipsketch.clip_weights`, which imports open_clip only when a
:class:`ClipGuidance` is built, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Hashable, List, Literal, Optional, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor

from nerfstudio_clipsketch.clip_weights import ClipGuidanceError, ClipWeightsUnavailableError, create_clip

logger = logging.getLogger(__name__)

__all__ = ["ClipGuidance", "ClipGuidanceConfig", "ClipGuidanceError", "ClipWeightsUnavailableError"]


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype a precision setting means on ``device`` (None: fp32, no autocast)."""
    if precision == "fp32" or (precision == "auto" and device.type not in ("cpu", "cuda")):
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    native_bf16 = (
        getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    )
    return torch.bfloat16 if native_bf16 else None


@dataclass
class ClipGuidanceConfig(InstantiateConfig):
    """The CLIP encoder and CLIPasso loss that guide the sketch."""

    _target: Type = field(default_factory=lambda: ClipGuidance)
    model_name: str = "RN101"
    """open_clip architecture, e.g. RN101 (CLIPasso's choice), RN50, ViT-B-32-quickgelu (the ancestor's)."""
    pretrained: str = "openai"
    """Weights: an open_clip tag for the architecture (e.g. openai), a path to a weights file, or 'none' for a random
    initialisation (smoke runs and tests only: the guidance is then meaningless)."""
    cache_dir: Optional[Path] = None
    """Where downloaded weights are kept (default: the Hugging Face cache)."""
    model_config: Optional[Path] = None
    """An open_clip model-config JSON to register before building, for architectures open_clip does not ship; the
    architecture is then named by the file's stem."""
    layer_weights: Tuple[float, ...] = (0.0, 0.0, 1.0, 1.0, 0.0)
    """Weight of the L2 term on each intermediate activation: for ResNets the stem and the four stages, for ViTs the
    transformer blocks in order (missing entries count as 0)."""
    fc_weight: float = 0.1
    """Weight of the cosine distance between the final image embeddings."""
    num_augmentations: int = 4
    """Random perspective + crop augmentations per view, on top of the un-augmented pair."""
    perspective_distortion: float = 0.5
    """Distortion scale of the random perspective augmentation (torchvision's RandomPerspective)."""
    crop_scale: float = 0.8
    """Area of the random square crop, as a fraction of the (square) image."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Arithmetic of CLIP's forward and backward passes (autocast; the loss itself is summed in fp32). 'auto': bf16
    on CPUs with native bf16 (AVX512-BF16 or AMX) and on CUDA GPUs that have it, fp16 on other CUDA GPUs, else fp32."""
    channels_last: bool = True
    """Keep convolutional CLIP models (the ResNets) and their inputs in channels-last memory layout."""


@dataclass
class PerspectiveCrop:
    """Parameters of one joint augmentation."""

    startpoints: List[List[int]]
    endpoints: List[List[int]]
    top: int
    left: int
    side: int


def sample_augmentation(height: int, width: int, distortion: float, crop_scale: float, generator: torch.Generator):
    """Random perspective (as torchvision's RandomPerspective) then a random square crop, drawn from ``generator``."""

    def randint(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi, (1,), generator=generator))

    half_h, half_w = height // 2, width // 2
    dw, dh = int(distortion * half_w), int(distortion * half_h)
    topleft = [randint(0, dw + 1), randint(0, dh + 1)]
    topright = [randint(width - dw - 1, width), randint(0, dh + 1)]
    botright = [randint(width - dw - 1, width), randint(height - dh - 1, height)]
    botleft = [randint(0, dw + 1), randint(height - dh - 1, height)]
    start = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
    side = max(1, int(round(math.sqrt(crop_scale) * min(height, width))))
    top, left = randint(0, height - side + 1), randint(0, width - side + 1)
    return PerspectiveCrop(start, [topleft, topright, botright, botleft], top, left, side)


def apply_augmentation(images: Float[Tensor, "B 3 H W"], aug: PerspectiveCrop, size: int) -> Float[Tensor, "B 3 S S"]:
    """Warp and crop a batch of images with the same parameters (differentiable)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    warped = TF.perspective(images, aug.startpoints, aug.endpoints, InterpolationMode.BILINEAR, fill=[0.0])
    crop = warped[..., aug.top : aug.top + aug.side, aug.left : aug.left + aug.side]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def drop_text_tower(model) -> None:
    """Free an open_clip ``CLIP``'s text tower (its image tower is all CLIPasso's loss uses)."""
    for name in ("transformer", "token_embedding", "ln_final", "text"):
        if isinstance(getattr(model, name, None), torch.nn.Module):
            setattr(model, name, None)
    for name in ("positional_embedding", "text_projection"):
        if isinstance(getattr(model, name, None), torch.nn.Parameter):
            setattr(model, name, None)


def center_resize(images: Float[Tensor, "B 3 H W"], size: int) -> Float[Tensor, "B 3 S S"]:
    """CLIP's own preprocessing: shorter side to ``size``, then a centre crop."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    images = F.interpolate(images, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return images[..., top : top + size, left : left + size]


class ClipGuidance:
    """A frozen open_clip image encoder and the CLIPasso loss built on it."""

    def __init__(
        self, config: ClipGuidanceConfig, device: torch.device | str = "cpu", model=None, text: bool = False
    ) -> None:
        """Build the encoder from ``config`` (or use ``model``, an open_clip ``CLIP``, as tests do); ``text``: keep
        the text tower (:meth:`text_embedding`), which is freed otherwise."""
        self.config = config
        if config.num_augmentations < 0:
            raise ClipGuidanceError(f"num_augmentations must be >= 0, got {config.num_augmentations}")
        model = create_clip(config, text=text) if model is None else model
        self.has_text = text and hasattr(model, "encode_text")
        if not self.has_text:
            drop_text_tower(model)
        self.model = model.eval().requires_grad_(False).to(device)
        visual = self.model.visual
        self.channels_last = config.channels_last and not hasattr(visual, "transformer")
        if self.channels_last:
            visual.to(memory_format=torch.channels_last)
        self.autocast_dtype = autocast_dtype(config.precision, torch.device(device))
        pre = getattr(visual, "preprocess_cfg", {}) or {}
        size = pre.get("size", getattr(visual, "image_size", 224))
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean, std = pre.get("mean"), pre.get("std")
        if mean is None or std is None:
            from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

            mean, std = mean or OPENAI_DATASET_MEAN, std or OPENAI_DATASET_STD
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.num_intermediates = self._count_intermediates()
        weights = list(config.layer_weights)
        if len(weights) > self.num_intermediates:
            raise ClipGuidanceError(
                f"{len(weights)} layer weights given but CLIP model {config.model_name!r} has "
                f"{self.num_intermediates} intermediate layers; give at most {self.num_intermediates}."
            )
        self.layers = [i for i, w in enumerate(weights) if w != 0.0]
        self.layer_weights = [weights[i] for i in self.layers]
        self._target_cache: Dict[Hashable, Tuple[List[Tensor], Tensor]] = {}

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def to(self, device: torch.device | str) -> "ClipGuidance":
        self.model.to(device)
        self.autocast_dtype = autocast_dtype(self.config.precision, torch.device(device))
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        self._target_cache = {
            k: ([f.to(device) for f in layers], fc.to(device)) for k, (layers, fc) in self._target_cache.items()
        }
        return self

    def _count_intermediates(self) -> int:
        visual = self.model.visual
        if hasattr(visual, "transformer"):
            return len(visual.transformer.resblocks)
        return 5 if hasattr(visual, "layer4") else len(getattr(visual, "stages", [None] * 4)) + 1

    def encode(self, images: Float[Tensor, "B 3 S S"]) -> Tuple[List[Tensor], Tensor]:
        """Intermediate activations at the weighted layers, and the final embedding, of images in [0, 1] (fp32,
        whatever precision CLIP runs in)."""
        x = (images - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            if not self.layers:
                return [], self.model.visual(x).float()
            # All layers, not stop_early: open_clip 2.32's ResNet truncates its blocks when stop_early is False.
            out = self.model.visual.forward_intermediates(x, indices=None, intermediates_only=False)
        inter = out["image_intermediates"]
        return [inter[i].float() for i in self.layers], out["image_features"].float()

    def _targets(
        self, target: Float[Tensor, "V 3 S S"], keys: Optional[Sequence[Hashable]]
    ) -> Tuple[List[Tensor], Tensor]:
        """Features of the un-augmented targets, computed once per key (camera) and reused."""
        if keys is None:
            with torch.no_grad():
                return self.encode(target)
        missing = [i for i, k in enumerate(keys) if k not in self._target_cache]
        if missing:
            with torch.no_grad():
                layers, fc = self.encode(target[missing])
            for j, i in enumerate(missing):
                self._target_cache[keys[i]] = ([f[j] for f in layers], fc[j])
        cached = [self._target_cache[k] for k in keys]
        layers = [torch.stack([c[0][li] for c in cached]) for li in range(len(self.layers))]
        return layers, torch.stack([c[1] for c in cached])

    def loss(
        self,
        sketch: Float[Tensor, "V H W 3"],
        target: Float[Tensor, "V H W 3"],
        generator: Optional[torch.Generator] = None,
        target_keys: Optional[Sequence[Hashable]] = None,
        augment: bool = True,
    ) -> Dict[str, Tensor]:
        """CLIPasso loss terms, each already weighted: ``clip_layer{i}`` and ``clip_fc`` (see :meth:`compare`)."""
        return self.compare(sketch, target, generator, target_keys, augment)[0]

    def compare(
        self,
        sketch: Float[Tensor, "V H W 3"],
        target: Float[Tensor, "V H W 3"],
        generator: Optional[torch.Generator] = None,
        target_keys: Optional[Sequence[Hashable]] = None,
        augment: bool = True,
    ) -> Tuple[Dict[str, Tensor], Optional[Float[Tensor, "B D"]]]:
        """CLIPasso loss terms, each already weighted: ``clip_layer{i}`` and ``clip_fc``; and the final embeddings of
        the sketches as compared (the un-augmented views, then each augmentation's; None when no term is weighted).

        Args:
            sketch: Rendered sketches, RGB in [0, 1], channels last (nerfstudio's layout).
            target: The views they should look like, same shape.
            generator: Source of the augmentations' randomness (CPU generator).
            target_keys: One hashable per view (e.g. the camera index): the un-augmented target features are then
                computed once per key and reused. ``None`` computes them afresh.
            augment: Add ``num_augmentations`` augmented pairs per view.
        """
        assert sketch.shape == target.shape and sketch.shape[-1] == 3, (sketch.shape, target.shape)
        if target_keys is not None and len(target_keys) != sketch.shape[0]:
            raise ValueError(f"{len(target_keys)} target keys for {sketch.shape[0]} views")
        if not self.layers and not self.config.fc_weight:
            return {}, None  # every CLIP term weighted 0: nothing to compute
        size = self.image_size
        # Everything from here on happens at CLIP's input size, augmentations included (as CLIPasso's 224-pixel
        # images): the loss does not depend on the photos' resolution, nor do the augmentations' random draws.
        s = center_resize(sketch.permute(0, 3, 1, 2).to(self.mean.dtype), size)
        t = center_resize(target.permute(0, 3, 1, 2).to(self.mean.dtype), size)
        sketches = [s]
        aug_targets = []
        num_aug = self.config.num_augmentations if augment else 0
        if num_aug:
            gen = generator if generator is not None else torch.Generator().manual_seed(0)
            both = torch.cat([s, t], dim=0)
            V = s.shape[0]
            for _ in range(num_aug):
                aug = sample_augmentation(size, size, self.config.perspective_distortion, self.config.crop_scale, gen)
                out = apply_augmentation(both, aug, size)
                sketches.append(out[:V])
                aug_targets.append(out[V:])
        V = s.shape[0]
        # One batched forward for every sketch view and augmentation; the augmented targets go through a second,
        # gradient-free one: in the same batch, CLIP's backward would also run over them (30 % slower on the CPU).
        layers, fc = self.encode(torch.cat(sketches, dim=0))
        t_layers, t_fc = self._targets(t, target_keys)
        if num_aug:
            with torch.no_grad():
                aug_layers, aug_fc = self.encode(torch.cat(aug_targets, dim=0))
            t_layers = [torch.cat([tl, al]) for tl, al in zip(t_layers, aug_layers)]
            t_fc = torch.cat([t_fc, aug_fc])
        losses: Dict[str, Tensor] = {}
        for li, w, f, tf in zip(self.layers, self.layer_weights, layers, t_layers):
            losses[f"clip_layer{li}"] = w * (f - tf).square().mean()
        if self.config.fc_weight:
            cos = F.cosine_similarity(fc, t_fc, dim=-1)
            losses["clip_fc"] = self.config.fc_weight * (1.0 - cos).mean()
        return losses, fc

    def embed(self, images: Float[Tensor, "V H W 3"], grad: bool = False) -> Float[Tensor, "V D"]:
        """Final CLIP embeddings of images in [0, 1], channels last, with CLIP's own preprocessing (no augmentation;
        differentiable with ``grad``)."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self.encode(center_resize(images.permute(0, 3, 1, 2).to(self.mean.dtype), self.image_size))[1]

    @torch.no_grad()
    def text_embedding(self, prompt: str) -> Float[Tensor, "D"]:
        """The CLIP embedding of ``prompt`` (open_clip's tokenizer for the architecture), fp32."""
        if not self.has_text:
            raise ClipGuidanceError("this CLIP guidance was built without its text tower (build it with text=True)")
        import open_clip

        try:
            tokenizer = open_clip.get_tokenizer(self.config.model_name)
        except Exception as e:  # a Hugging Face tokenizer that cannot be fetched from here, among others
            raise ClipGuidanceError(
                f"no text tokenizer for CLIP model {self.config.model_name!r} can be had here ({type(e).__name__}: "
                f"{e}); a text prompt needs one (the ResNet and OpenAI ViT models ship theirs)."
            ) from e
        tokens = tokenizer([prompt]).to(self.device)
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            return self.model.encode_text(tokens)[0].float()

    @torch.no_grad()
    def similarity(self, a: Float[Tensor, "V H W 3"], b: Float[Tensor, "V H W 3"]) -> Float[Tensor, "V"]:
        """Cosine similarity of the final CLIP embeddings of two image batches (no augmentation)."""
        return F.cosine_similarity(self.embed(a), self.embed(b), dim=-1)
