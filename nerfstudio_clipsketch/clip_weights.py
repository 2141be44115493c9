"""CLIP architectures and their weights for :mod:`nerfstudio_clipsketch.clip_guidance`: open_clip tags, weights files,
the local cache and the Hugging Face hub, each problem as one :class:`ClipGuidanceError` that names the value and what
is allowed. open_clip is imported only when a model is built."""

from __future__ import annotations

import functools
import logging
import socket
import sys
from dataclasses import asdict
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
    open_clip = import_open_clip()

    if config.model_config is not None:
        path = Path(config.model_config).expanduser()
        if not path.is_file():
            raise ClipGuidanceError(f"CLIP model config {str(path)!r} does not exist (expected an open_clip JSON).")
        open_clip.add_model_config(path)
    models = open_clip.list_models()
    if config.model_name not in models:
        raise ClipGuidanceError(f"Unknown CLIP model {config.model_name!r}. open_clip knows: {', '.join(models)}.")
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
    open_clip = import_open_clip()

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


def import_open_clip():
    """``import open_clip``, without the 2-3 s of wandb that timm (which open_clip imports) pulls in for a logging
    helper clipsketch never calls. wandb is hidden only during this import and only when nothing imported it yet, so a
    later ``import wandb`` (nerfstudio's ``--vis wandb``) loads it as usual."""
    if "open_clip" in sys.modules or "wandb" in sys.modules:
        import open_clip

        return open_clip
    sys.modules["wandb"] = None  # type: ignore[assignment]  # `import wandb` raises ImportError: timm goes without
    try:
        import open_clip
    finally:
        del sys.modules["wandb"]
    return open_clip


def _image_tower(config):
    """The image tower of ``config``'s architecture alone, randomly initialised from :data:`RANDOM_WEIGHTS_SEED` to
    exactly the values the whole model would give it (open_clip builds the image tower first), without the ~1.6 s
    the text tower's initialisation costs; None where open_clip's builder is not there (another version)."""
    open_clip = import_open_clip()
    build = getattr(open_clip.model, "_build_vision_tower", None)
    cfg = open_clip.get_model_config(config.model_name)
    if build is None or cfg is None or cfg.get("custom_text") or "hf_model_name" in cfg.get("text_cfg", {}):
        return None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        visual = build(cfg["embed_dim"], cfg["vision_cfg"], cfg.get("quick_gelu", False), None)
    return ImageTower(visual)


class ImageTower(torch.nn.Module):
    """An open_clip model's image tower, as ``model.visual``: all CLIPasso's loss uses."""

    def __init__(self, visual: torch.nn.Module) -> None:
        super().__init__()
        self.visual = visual


def _weights_into_empty_model(config, path: str):
    """The architecture built on the meta device (no random initialisation: the weights replace it), then handed the
    weights of ``path`` as they are read (``load_state_dict(assign=True)`` inside open_clip's own checkpoint
    conversions: no copy); the text tower's causal mask, the one tensor not in a checkpoint, is built again. None
    when a tensor is left without a value (an architecture with other unsaved tensors: built the usual way)."""
    open_clip = import_open_clip()
    with torch.device("meta"):  # parameters made without values, so nothing is initialised
        model = open_clip.create_model(config.model_name, pretrained=None, device="meta")
    model.load_state_dict = functools.partial(type(model).load_state_dict, model, assign=True)
    try:
        load_weights_file(model, path, config.model_name)
    finally:
        del model.load_state_dict
    if getattr(model, "attn_mask", None) is not None and model.attn_mask.is_meta:
        size = model.attn_mask.shape[-1]
        model.attn_mask = torch.full((size, size), float("-inf")).triu_(1)
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_meta for t in tensors):
        return None
    return model.float()  # checkpoints stored in half precision: clipsketch's autocast expects fp32 weights


def create_clip(config, text: bool = True):
    """The open_clip model of a :class:`~nerfstudio_clipsketch.clip_guidance.ClipGuidanceConfig`: its architecture with
    the weights it names, checked first (:func:`resolve_weights`). A random CLIP (pretrained 'none') is seeded, so
    every process that loads a run builds the same one. ``text`` False: the text tower may be left out (a model
    with only ``visual``), which saves its initialisation; with weights, nothing is initialised that they replace."""
    open_clip = import_open_clip()
    pretrained = resolve_weights(config)
    logger.info("Loading CLIP %s (weights: %s)", config.model_name, pretrained or "random")
    if pretrained is None and not text:
        tower = _image_tower(config)
        if tower is not None:
            return tower
    weights_file = pretrained is not None and Path(pretrained).is_file()
    if pretrained is not None:
        path = pretrained if weights_file else None
        pretrained_cfg = {} if weights_file else open_clip.get_pretrained_cfg(config.model_name, pretrained)
        if path is None and pretrained_cfg:
            cache = str(config.cache_dir) if config.cache_dir else None
            path = open_clip.download_pretrained(pretrained_cfg, cache_dir=cache)
        model = _weights_into_empty_model(config, path) if path else None
        if model is not None:
            from open_clip.transform import PreprocessCfg, merge_preprocess_dict

            preprocess = merge_preprocess_dict(asdict(PreprocessCfg()), pretrained_cfg)
            if getattr(model.visual, "image_size", None) is not None:
                preprocess["size"] = model.visual.image_size
            open_clip.set_model_preprocess_cfg(model, preprocess)
            return model
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
