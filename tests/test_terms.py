"""The guidance terms' seam (a term is found by its settings' field and balanced by the model), the text prompt term,
and strokes tied across a mirror plane inside the model (training keeps them tied; checkpoints keep the tying)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, Type

import pytest
import torch
from torch import Tensor

from nerfstudio_clipsketch.clip_guidance import ClipGuidance, ClipGuidanceConfig
from nerfstudio_clipsketch.model import ClipSketchModel, ClipSketchModelConfig
from nerfstudio_clipsketch.symmetry import Plane, symmetry_score
from nerfstudio_clipsketch.terms import GuidanceTerm, GuidanceTermConfig, TermInputs
from nerfstudio_clipsketch.terms.text import TextTerm, TextTermConfig
from tests.helpers import TINY_CLIP, make_model, ring_cameras


class InkCountTerm(GuidanceTerm):
    """A toy structure term: the ink's mean, balanced on the ink."""

    name = "ink_count"
    balanced = "ink"

    def loss(self, inputs: TermInputs) -> Dict[str, Tensor]:
        return {self.name: inputs.ink.mean()}


@dataclass
class InkCountConfig(GuidanceTermConfig):
    _target: Type = field(default_factory=lambda: InkCountTerm)
    weight: float = 0.5


@dataclass
class ConfigWithANewTerm(ClipSketchModelConfig):
    ink_count: InkCountConfig = field(default_factory=InkCountConfig)


def test_a_new_term_is_one_settings_field_and_is_balanced_against_clip(tiny_guidance):
    from nerfstudio.data.scene_box import SceneBox

    config = ConfigWithANewTerm(num_curves=2, gaussians_per_curve=16, symmetry="off")
    model = config.setup(scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=8)
    assert isinstance(model, ClipSketchModel)
    model.use_guidance(tiny_guidance)
    cameras = ring_cameras()
    model.setup_from_data(cameras, background=torch.ones(3))
    assert [t.name for t in model.balancer.terms] == ["clip", "edges", "ink_count"]
    images = torch.rand(1, 48, 48, 3, generator=torch.Generator().manual_seed(0))
    for _ in range(2):  # the first step measures, the second is scaled
        losses = model.get_loss_dict(model.get_outputs(cameras[:1]), {"image": images, "image_idx": [0]})
        assert set(losses) >= {"clip_fc", "edges", "ink_count"}
        sum(losses.values()).backward()
    balance = model.balancer.balances["ink_count"]
    assert float(balance.scale()) == pytest.approx(0.5 * float(balance.reference_norm / balance.term_norm), rel=1e-6)
    with pytest.raises(Exception, match="ink_count.weight"):
        ConfigWithANewTerm(ink_count=InkCountConfig(weight=-1.0)).check()


@pytest.fixture(scope="module")
def guidance_with_text(tmp_path_factory) -> ClipGuidance:
    """A tiny CLIP with a text tower that open_clip's own tokenizer fits (its full vocabulary)."""
    config = {**TINY_CLIP, "text_cfg": {**TINY_CLIP["text_cfg"], "vocab_size": 49408, "context_length": 77}}
    path = tmp_path_factory.mktemp("clip") / "clipsketch-tiny-text.json"
    path.write_text(json.dumps(config))
    torch.manual_seed(0)
    clip = ClipGuidanceConfig(model_name=path.stem, pretrained="none", model_config=path, layer_weights=(),
                              fc_weight=0.0, num_augmentations=0)  # fmt: skip
    return ClipGuidance(clip, text=True)


def test_the_text_tower_is_freed_without_a_prompt(tiny_guidance, guidance_with_text):
    assert getattr(tiny_guidance.model, "transformer", None) is None and not tiny_guidance.has_text
    assert guidance_with_text.text_embedding("a rose").shape == (32,)
    assert not torch.allclose(guidance_with_text.text_embedding("a rose"), guidance_with_text.text_embedding("a cube"))


def test_the_text_term_moves_the_views_embedding_toward_the_prompts(guidance_with_text):
    """CLIPasso's terms off: the prompt alone moves the strokes, and the rendered view's embedding turns toward the
    prompt's (what a random CLIP's embedding of "a rose" means is nothing: only the direction is tested)."""
    model = make_model(guidance_with_text, num_curves=8, stroke_width=10.0, text=TextTermConfig(prompt="a rose"))
    model.config.edges.weight = 0.0
    cameras = ring_cameras(size=64, focal=80.0)
    model.setup_from_data(cameras, background=torch.ones(3))
    assert [t.name for t in model.balancer.terms] == ["clip", "text"]
    term = next(t for t in model.balancer.terms if isinstance(t, TextTerm))
    prompt = term.prompt_embedding()

    def similarity() -> float:
        with torch.no_grad():
            view = guidance_with_text.embed(model.get_outputs(cameras[:1])["rgb"])
        return float(torch.cosine_similarity(view, prompt[None])[0])

    before = similarity()
    optimizer = torch.optim.Adam([model.control_points], lr=5e-2)
    images = torch.ones(1, 64, 64, 3)
    for _ in range(20):
        losses = model.get_loss_dict(model.get_outputs(cameras[:1]), {"image": images, "image_idx": [0]})
        assert set(losses) == {"text"}
        optimizer.zero_grad()
        losses["text"].backward()
        assert float(model.control_points.grad.abs().sum()) > 0
        optimizer.step()
        model.resample_gaussians()
    # A random CLIP maps every sketch near one embedding: the cosine moves by about 1e-3 (measured 0.0015).
    assert similarity() > before + 5e-4, (before, similarity())


def test_a_blank_prompt_is_refused():
    with pytest.raises(Exception, match="text.prompt"):
        make_model(text=TextTermConfig(prompt="  "))


def test_mirrored_strokes_stay_mirrored_through_training_and_a_checkpoint(tiny_guidance):
    cameras = ring_cameras()
    model = make_model(tiny_guidance, num_curves=6, symmetry="x")
    model.setup_from_data(cameras, background=torch.ones(3))
    plane = model.curves.plane()
    assert plane is not None and plane.angle(Plane(torch.tensor([1.0, 0.0, 0.0]), 0.0)) < 1e-6
    full = model.world_control_points().numel()
    assert model.curves.num_free_parameters <= full // 2 + 3 * 4  # about half (a crossing stroke's middle aside)
    images = torch.rand(len(cameras), 48, 48, 3, generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.Adam(model.get_param_groups()["control_points"], lr=1e-2)
    start = model.world_control_points().detach().clone()
    for step in range(8):
        i = step % len(cameras)
        losses = model.get_loss_dict(
            model.get_outputs(cameras[i : i + 1]), {"image": images[i : i + 1], "image_idx": [i]}
        )
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    world = model.world_control_points().detach()
    assert float((world - start).abs().max()) > 1e-3  # it moved
    assert symmetry_score(world, plane, 2.0) < 2e-3  # and stayed mirrored (the sampling floor is about 4e-4)
    loaded = make_model(tiny_guidance, num_curves=6)  # untied until the checkpoint says otherwise
    loaded.load_state_dict(model.state_dict())
    torch.testing.assert_close(loaded.world_control_points(), world)
    assert loaded.curves.tying is not None and loaded.control_points.shape == model.control_points.shape
