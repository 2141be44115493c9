import time

import pytest
import torch

from nerfstudio_clipsketch import clip_guidance, clip_weights
from nerfstudio_clipsketch.clip_guidance import (
    ClipGuidance,
    ClipGuidanceConfig,
    ClipGuidanceError,
    ClipWeightsUnavailableError,
)


def images(n=2, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, size, size, 3, generator=g)


def total(losses):
    return sum(losses.values())


def test_loss_is_zero_for_identical_images(tiny_guidance):
    a = images()
    losses = tiny_guidance.loss(a, a.clone(), generator=torch.Generator().manual_seed(0))
    assert set(losses) == {"clip_layer1", "clip_layer2", "clip_layer3", "clip_fc"}
    for name, value in losses.items():
        assert value.item() == pytest.approx(0.0, abs=1e-5), name


def test_loss_grows_with_the_difference(tiny_guidance):
    target = images(seed=1)
    noise = images(seed=2)
    values = []
    for amount in (0.0, 0.1, 0.3, 1.0):
        sketch = (1 - amount) * target + amount * noise
        values.append(total(tiny_guidance.loss(sketch, target, augment=False)).item())
    assert values[0] == pytest.approx(0.0, abs=1e-5)
    assert values[0] < values[1] < values[2] < values[3], values


def test_gradients_reach_the_rendered_image(tiny_guidance):
    target = images(seed=3)
    sketch = images(seed=4).requires_grad_()
    total(tiny_guidance.loss(sketch, target, generator=torch.Generator().manual_seed(0))).backward()
    assert sketch.grad is not None and sketch.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_guidance.model.parameters())  # CLIP stays frozen


def test_cached_target_features_equal_a_fresh_computation_for_every_view(tiny_guidance):
    tiny_guidance._target_cache.clear()
    views = images(n=4, seed=5)
    sketches = images(n=4, seed=6)
    keys = [("train", i) for i in range(4)]
    # Fill the cache through the loss in two different batches, then compare with fresh features per view.
    tiny_guidance.loss(sketches[:2], views[:2], target_keys=keys[:2], augment=False)
    tiny_guidance.loss(sketches[[3, 2]], views[[3, 2]], target_keys=[keys[3], keys[2]], augment=False)
    for i, key in enumerate(keys):
        cached_layers, cached_fc = tiny_guidance._target_cache[key]
        view = clip_guidance.center_resize(views[i : i + 1].permute(0, 3, 1, 2), 64)
        fresh_layers, fresh_fc = tiny_guidance.encode(view)
        torch.testing.assert_close(cached_fc, fresh_fc[0])
        for c, f in zip(cached_layers, fresh_layers):
            torch.testing.assert_close(c, f[0])
    # And the loss with the cache equals the loss without it.
    with_cache = tiny_guidance.loss(sketches, views, target_keys=keys, augment=False)
    without = tiny_guidance.loss(sketches, views, augment=False)
    for name in with_cache:
        torch.testing.assert_close(with_cache[name], without[name])


def test_augmentations_are_joint_and_seeded(tiny_guidance):
    a = images(seed=7)
    # Identical pairs stay identical under any joint augmentation: zero loss even with augmentations on.
    assert total(tiny_guidance.loss(a, a, generator=torch.Generator().manual_seed(3))).item() == pytest.approx(
        0.0, abs=1e-5
    )
    b = images(seed=8)
    one = total(tiny_guidance.loss(a, b, generator=torch.Generator().manual_seed(3)))
    same = total(tiny_guidance.loss(a, b, generator=torch.Generator().manual_seed(3)))
    other = total(tiny_guidance.loss(a, b, generator=torch.Generator().manual_seed(4)))
    torch.testing.assert_close(one, same)
    assert one.item() != other.item()


def test_normalisation_comes_from_the_model(tiny_clip_config):
    import open_clip

    open_clip.add_model_config(tiny_clip_config)
    model = open_clip.create_model(tiny_clip_config.stem, pretrained=None)
    model.visual.preprocess_cfg = {"size": 64, "mean": (0.1, 0.2, 0.3), "std": (0.5, 0.5, 0.5)}
    guidance = ClipGuidance(ClipGuidanceConfig(), model=model)
    torch.testing.assert_close(guidance.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))
    assert guidance.image_size == 64


def test_vit_layer_weights_index_blocks():
    import open_clip

    torch.manual_seed(0)
    vit = open_clip.model.CLIP(
        embed_dim=16,
        vision_cfg=open_clip.model.CLIPVisionCfg(layers=3, width=32, head_width=16, patch_size=16, image_size=32),
        text_cfg=open_clip.model.CLIPTextCfg(context_length=8, vocab_size=64, width=16, heads=2, layers=1),
    )
    guidance = ClipGuidance(ClipGuidanceConfig(layer_weights=(0.0, 1.0), num_augmentations=1), model=vit)
    assert guidance.num_intermediates == 3
    losses = guidance.loss(images(seed=1, size=32), images(seed=2, size=32))
    assert set(losses) == {"clip_layer1", "clip_fc"}
    with pytest.raises(ClipGuidanceError, match="at most 3"):
        ClipGuidance(ClipGuidanceConfig(layer_weights=(1.0,) * 5), model=vit)


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ClipGuidanceError, match="Unknown CLIP model 'RN-nope'.*RN101"):
        ClipGuidanceConfig(model_name="RN-nope").setup()


def test_unknown_tag_lists_the_available_ones():
    with pytest.raises(ClipGuidanceError, match="Unknown weights 'nope' for CLIP model 'RN50'.*openai"):
        ClipGuidanceConfig(model_name="RN50", pretrained="nope").setup()


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "weights.bin"
    with pytest.raises(ClipGuidanceError, match="weights.bin.*does not exist"):
        ClipGuidanceConfig(model_name="RN50", pretrained=str(missing)).setup()


def test_unreachable_weights_fail_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setattr(clip_weights, "hub_reachable", lambda timeout=3.0: False)
    start = time.monotonic()
    with pytest.raises(ClipWeightsUnavailableError, match="pretrained /path/to/weights.bin.*pretrained none"):
        ClipGuidanceConfig(model_name="RN101", pretrained="openai", cache_dir=tmp_path).setup()
    assert time.monotonic() - start < 10


def test_weights_from_a_local_file(tiny_clip_config, tmp_path):
    import open_clip

    open_clip.add_model_config(tiny_clip_config)
    torch.manual_seed(1)
    model = open_clip.create_model(tiny_clip_config.stem, pretrained=None)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    config = ClipGuidanceConfig(model_name=tiny_clip_config.stem, pretrained=str(path), model_config=tiny_clip_config)
    saved = model.state_dict()
    loaded = config.setup().model.state_dict()
    assert {k for k in saved if k.startswith("visual.")} <= set(loaded)  # the image tower whole
    for name, q in loaded.items():
        torch.testing.assert_close(saved[name], q, msg=name)
    with_text = config.setup(text=True).model.state_dict()
    assert set(with_text) == set(saved)  # the text tower is kept (and loaded) when a prompt needs it
    torch.testing.assert_close(with_text["positional_embedding"], saved["positional_embedding"])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_matches_fp32_within_tolerance(tiny_clip_config, precision):
    """Each loss term within 2 % of the total loss, and the gradient on the sketch pointing the same way (cosine >
    0.99). (The tiny random CLIP's embeddings are all alike, so its cosine term sits at bf16's resolution: terms are
    compared with the total, not each with itself.)"""
    import dataclasses

    from nerfstudio_clipsketch.clip_guidance import ClipGuidance, ClipGuidanceConfig

    if precision == "fp16" and not torch.cuda.is_available():
        pytest.skip("fp16 autocast is for CUDA; the CPU's reduced precision is bf16")
    base = ClipGuidanceConfig(
        model_name=tiny_clip_config.stem,
        pretrained="none",
        model_config=tiny_clip_config,
        layer_weights=(0.0, 1.0, 1.0, 1.0, 0.0),
        num_augmentations=2,
        precision="fp32",
    )
    sketch, target = images(n=3, size=48, seed=1), images(n=3, size=48, seed=2)
    results = []
    for config in (base, dataclasses.replace(base, precision=precision)):
        torch.manual_seed(0)
        guidance = ClipGuidance(config)
        drawn = sketch.clone().requires_grad_(True)
        losses = guidance.loss(drawn, target, generator=torch.Generator().manual_seed(3))
        total(losses).backward()
        results.append(({k: float(v.detach()) for k, v in losses.items()}, drawn.grad.flatten()))
    (fp32, grad32), (reduced, grad_reduced) = results
    assert guidance.autocast_dtype is not None
    for name in fp32:
        assert abs(reduced[name] - fp32[name]) < 0.02 * sum(fp32.values()), (name, fp32, reduced)
    assert float(torch.nn.functional.cosine_similarity(grad32, grad_reduced, dim=0)) > 0.99


def test_auto_precision_is_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    from nerfstudio_clipsketch.clip_guidance import autocast_dtype

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert autocast_dtype("auto", torch.device("cpu")) is None
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert autocast_dtype("auto", torch.device("cpu")) == torch.bfloat16
    assert autocast_dtype("fp32", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16


def test_without_a_prompt_only_the_image_tower_is_built_with_the_same_random_weights(tiny_clip_config):
    """Random weights (pretrained 'none') are the seeded full model's image tower, exactly, without the text tower."""
    from nerfstudio_clipsketch.clip_guidance import ClipGuidanceConfig
    from nerfstudio_clipsketch.clip_weights import create_clip

    config = ClipGuidanceConfig(model_name=tiny_clip_config.stem, pretrained="none", model_config=tiny_clip_config)
    whole, image_only = create_clip(config, text=True), create_clip(config, text=False)
    assert hasattr(whole, "transformer") and not hasattr(image_only, "transformer")
    expected = whole.visual.state_dict()
    assert set(image_only.visual.state_dict()) == set(expected)
    for name, value in image_only.visual.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)


def test_importing_open_clip_leaves_wandb_importable():
    """open_clip is imported without timm's optional wandb import; wandb itself still imports afterwards."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from nerfstudio_clipsketch.clip_weights import import_open_clip\n"
        "import_open_clip()\n"
        "assert 'timm' in sys.modules and 'wandb' not in sys.modules, sorted(m for m in sys.modules if 'wandb' in m)\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('wandb') is None or __import__('wandb') is not None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
