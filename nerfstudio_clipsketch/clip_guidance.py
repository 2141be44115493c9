"""CLIPasso's guidance: compare a rendered sketch with the target view inside a frozen CLIP image encoder.

The loss is CLIPasso's (Vinker et al. 2022): the L2 distance between intermediate activations of the sketch and of
the target (the "geometric" terms, one per layer, weighted), plus ``1 - cos`` between their final embeddings (the
"semantic" term), averaged over the un-augmented pair and ``num_augmentations`` random perspective + crop
augmentations applied identically to sketch and target.

One open_clip model is built once per :class:`ClipGuidance`, frozen and in eval mode. It is deliberately not an
``nn.Module`` attribute of the nerfstudio model, so it is in no optimiser group and not written to checkpoints.
open_clip is imported only when a :class:`ClipGuidance` is built, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
import math
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Hashable, List, Optional, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor

logger = logging.getLogger(__name__)

HUB_HOST = ("huggingface.co", 443)
RANDOM_WEIGHTS_SEED = 0


class ClipGuidanceError(ValueError):
    """A CLIP model name, weights tag or weights file that cannot be used."""


class ClipWeightsUnavailableError(ClipGuidanceError):
    """The requested pretrained weights are neither cached nor downloadable from here."""


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


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _cached_weights(cfg: dict, cache_dir: Optional[Path]) -> Optional[str]:
    """A locally cached weights file for an open_clip pretrained config, without touching the network."""
    from huggingface_hub import try_to_load_from_cache

    hub = cfg.get("hf_hub", "")
    if hub:
        repo_id, filename = hub.rstrip("/"), None
        if not hub.endswith("/"):
            repo_id, filename = hub.rsplit("/", 1)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str):
                return found
    url = cfg.get("url", "")
    if url:
        root = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "clip"
        candidate = root / url.rsplit("/", 1)[-1]
        if candidate.exists():
            return str(candidate)
    return None


def _check_model_and_weights(config: ClipGuidanceConfig) -> Optional[str]:
    """Validate the architecture and weights before anything is built; returns what to pass as ``pretrained``."""
    import open_clip

    if config.model_config is not None:
        path = Path(config.model_config).expanduser()
        if not path.is_file():
            raise ClipGuidanceError(f"CLIP model config {str(path)!r} does not exist (expected an open_clip JSON).")
        open_clip.add_model_config(path)
    models = open_clip.list_models()
    if config.model_name not in models:
        raise ClipGuidanceError(
            f"Unknown CLIP model {config.model_name!r}. open_clip knows: {', '.join(models)}."
        )
    pretrained = config.pretrained.strip()
    if pretrained.lower() in ("", "none"):
        return None
    if _looks_like_path(pretrained) or Path(pretrained).exists():
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise ClipGuidanceError(f"CLIP weights file {str(path)!r} does not exist.")
        return str(path)
    tags = open_clip.list_pretrained_tags_by_model(config.model_name)
    if pretrained not in tags:
        raise ClipGuidanceError(
            f"Unknown weights {pretrained!r} for CLIP model {config.model_name!r}. "
            f"Available tags: {', '.join(tags) or '(none)'}; or a path to a weights file; or 'none'."
        )
    cfg = open_clip.get_pretrained_cfg(config.model_name, pretrained)
    if _cached_weights(cfg, config.cache_dir) is None and not _hub_reachable():
        source = cfg.get("hf_hub", "").rstrip("/") or cfg.get("url", "")
        raise ClipWeightsUnavailableError(
            f"CLIP weights {config.model_name}/{pretrained} are not cached here and {HUB_HOST[0]} cannot be reached. "
            f"Either download them once on a machine with internet access (e.g. `huggingface-cli download {source}` "
            "and copy the Hugging Face cache, or run once online), or pass a local file with "
            "--pipeline.model.clip.pretrained /path/to/weights.bin (add --pipeline.model.clip.model-name for the "
            "matching architecture), or use --pipeline.model.clip.pretrained none for a smoke run with random weights."
        )
    return pretrained


def _load_weights_file(model, path: str, model_name: str) -> None:
    """Load a weights file into the CLIP model just built; a file that holds no weights, or another architecture's,
    is one :class:`ClipGuidanceError` (torch's own errors advise unsafe unpickling, or list hundreds of tensors)."""
    import open_clip

    try:
        open_clip.load_checkpoint(model, path)
    except Exception as e:  # torch.load, safetensors and open_clip's state-dict conversions raise many types
        if isinstance(e, RuntimeError) and "loading state_dict" in str(e):
            raise ClipGuidanceError(
                f"CLIP weights file {path!r} does not hold weights for CLIP model {model_name!r} (its tensors do not "
                "match: another architecture?); name the file's architecture with --pipeline.model.clip.model-name."
            ) from e
        raise ClipGuidanceError(
            f"CLIP weights file {path!r} cannot be read as CLIP weights ({type(e).__name__}); expected an open_clip "
            "or OpenAI CLIP checkpoint (.pt, .pth, .bin or .safetensors)."
        ) from e


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

    def __init__(self, config: ClipGuidanceConfig, device: torch.device | str = "cpu", model=None) -> None:
        """Build the encoder from ``config`` (or use ``model``, an open_clip ``CLIP``, as tests do)."""
        self.config = config
        if config.num_augmentations < 0:
            raise ClipGuidanceError(f"num_augmentations must be >= 0, got {config.num_augmentations}")
        if model is None:
            import open_clip

            pretrained = _check_model_and_weights(config)
            weights_file = pretrained is not None and Path(pretrained).is_file()
            logger.info("Loading CLIP %s (weights: %s)", config.model_name, pretrained or "random")
            # A random CLIP (pretrained 'none') is seeded, so every process that loads a run builds the same one.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_WEIGHTS_SEED)
                model = open_clip.create_model(
                    config.model_name,
                    pretrained=None if weights_file else pretrained,
                    cache_dir=str(config.cache_dir) if config.cache_dir else None,
                )
            if weights_file:
                _load_weights_file(model, str(pretrained), config.model_name)
        self.model = model.eval().requires_grad_(False).to(device)
        visual = self.model.visual
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
        """Intermediate activations at the weighted layers, and the final embedding, of images in [0, 1]."""
        x = (images - self.mean) / self.std
        if not self.layers:
            return [], self.model.visual(x)
        # All layers, not stop_early: open_clip 2.32's ResNet truncates its blocks when stop_early is False.
        out = self.model.visual.forward_intermediates(x, indices=None, intermediates_only=False)
        inter = out["image_intermediates"]
        return [inter[i] for i in self.layers], out["image_features"]

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
        """CLIPasso loss terms, each already weighted: ``clip_layer{i}`` and ``clip_fc``.

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
        size = self.image_size
        s = sketch.permute(0, 3, 1, 2).to(self.mean.dtype)
        t = target.permute(0, 3, 1, 2).to(self.mean.dtype)
        sketches = [center_resize(s, size)]
        aug_targets = []
        num_aug = self.config.num_augmentations if augment else 0
        if num_aug:
            gen = generator if generator is not None else torch.Generator().manual_seed(0)
            both = torch.cat([s, t], dim=0)
            V = s.shape[0]
            for _ in range(num_aug):
                aug = sample_augmentation(
                    s.shape[-2], s.shape[-1], self.config.perspective_distortion, self.config.crop_scale, gen
                )
                out = apply_augmentation(both, aug, size)
                sketches.append(out[:V])
                aug_targets.append(out[V:])
        V = s.shape[0]
        # One batched forward for every sketch view and augmentation; the augmented targets go through a second,
        # gradient-free one: in the same batch, CLIP's backward would also run over them (30 % slower on the CPU).
        layers, fc = self.encode(torch.cat(sketches, dim=0))
        t_layers, t_fc = self._targets(center_resize(t, size), target_keys)
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
        return losses

    @torch.no_grad()
    def embed(self, images: Float[Tensor, "V H W 3"]) -> Float[Tensor, "V D"]:
        """Final CLIP embeddings of images in [0, 1], channels last, with CLIP's own preprocessing (no augmentation)."""
        return self.encode(center_resize(images.permute(0, 3, 1, 2).to(self.mean.dtype), self.image_size))[1]

    @torch.no_grad()
    def similarity(self, a: Float[Tensor, "V H W 3"], b: Float[Tensor, "V H W 3"]) -> Float[Tensor, "V"]:
        """Cosine similarity of the final CLIP embeddings of two image batches (no augmentation)."""
        return F.cosine_similarity(self.embed(a), self.embed(b), dim=-1)
