"""CLIP architectures and their weights for :mod:`nerfstudio_clipsketch.clip_guidance`: open_clip tags, weights files,
the local cache and the Hugging Face hub, each problem as one :class:`ClipGuidanceError` that names the value and what
is allowed. open_clip is imported only when a model is built."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Optional

import torch

logger = logging.getLogger(__name__)

HUB_HOST = ("huggingface.co", 443)
RANDOM_WEIGHTS_SEED = 0


class ClipGuidanceError(ValueError):
    """A CLIP model name, weights tag or weights file that cannot be used."""


class ClipWeightsUnavailableError(ClipGuidanceError):
    """The requested pretrained weights are neither cached nor downloadable from here."""


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))


def hub_reachable(timeout: float = 3.0) -> bool:
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


def resolve_weights(config) -> Optional[str]:
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
    if _cached_weights(cfg, config.cache_dir) is None and not hub_reachable():
        source = cfg.get("hf_hub", "").rstrip("/") or cfg.get("url", "")
        raise ClipWeightsUnavailableError(
            f"CLIP weights {config.model_name}/{pretrained} are not cached here and {HUB_HOST[0]} cannot be reached. "
            f"Either download them once on a machine with internet access (e.g. `huggingface-cli download {source}` "
            "and copy the Hugging Face cache, or run once online), or pass a local file with "
            "--pipeline.model.clip.pretrained /path/to/weights.bin (add --pipeline.model.clip.model-name for the "
            "matching architecture), or use --pipeline.model.clip.pretrained none for a smoke run with random weights."
        )
    return pretrained


def load_weights_file(model, path: str, model_name: str) -> None:
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


def create_clip(config):
    """The open_clip model of a :class:`~nerfstudio_clipsketch.clip_guidance.ClipGuidanceConfig`: its architecture with
    the weights it names, checked first (:func:`resolve_weights`). A random CLIP (pretrained 'none') is seeded, so
    every process that loads a run builds the same one."""
    import open_clip

    pretrained = resolve_weights(config)
    weights_file = pretrained is not None and Path(pretrained).is_file()
    logger.info("Loading CLIP %s (weights: %s)", config.model_name, pretrained or "random")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = open_clip.create_model(
            config.model_name,
            pretrained=None if weights_file else pretrained,
            cache_dir=str(config.cache_dir) if config.cache_dir else None,
        )
    if weights_file:
        load_weights_file(model, str(pretrained), config.model_name)
    return model
