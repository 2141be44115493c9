"""How strong the structure term (``edges``) pulls beside CLIP's terms: gradient norms on the control points.

Sets up the training pipeline on a scene (default settings, RN101 with random weights unless ``--pretrained``), then
for ``--steps`` training steps computes the gradient of CLIP's terms (``clip_*``) and of the structure term on the
control points separately, and takes an Adam step on their sum as training does (so the balance between them,
:class:`~nerfstudio_clipsketch.edges.GradientBalance`, settles as it would). Prints per step the two norms and their
ratio, then the median ratio over the steps after the first.

Usage::

    python -m benchmarks.bench_gradients --data ../shared/data/clipasso3d/rose --steps 12
    python -m benchmarks.bench_gradients --data ... --edge-weight 2
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from nerfstudio_clipsketch.clip_guidance import ClipGuidanceConfig
from nerfstudio_clipsketch.datamanager import ClipSketchDataManagerConfig
from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParserConfig
from nerfstudio_clipsketch.model import ClipSketchModelConfig
from nerfstudio_clipsketch.pipeline import ClipSketchPipelineConfig


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--edge-weight", type=float, default=ClipSketchModelConfig.edge_weight)
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    config = ClipSketchPipelineConfig(
        datamanager=ClipSketchDataManagerConfig(dataparser=ClipSketchDataParserConfig(data=args.data)),
        model=ClipSketchModelConfig(edge_weight=args.edge_weight, clip=ClipGuidanceConfig(pretrained=args.pretrained)),
    )
    pipeline = config.setup(device="cpu", test_mode="val")
    model = pipeline.model
    model.train()
    optimizer = torch.optim.Adam([model.control_points], lr=args.lr)
    print(f"{args.data.name}: init {model.init_method}, edge weight {args.edge_weight}")
    print("| step | CLIP terms' gradient norm | structure term's gradient norm | structure / CLIP |\n|---|---|---|---|")
    ratios = []
    for step in range(args.steps):
        cameras, batch = pipeline.datamanager.next_train(step)
        losses = model.get_loss_dict(model.get_outputs(cameras), batch)
        clip = sum(v for k, v in losses.items() if k.startswith("clip"))
        (clip_grad,) = torch.autograd.grad(clip, model.control_points, retain_graph=True)
        (edge_grad,) = torch.autograd.grad(losses["edges"], model.control_points, retain_graph=True)
        optimizer.zero_grad()
        (clip + losses["edges"]).backward()  # also lets the balance see both gradients, as in training
        optimizer.step()
        model.resample_gaussians()
        ratio = float(edge_grad.norm() / clip_grad.norm().clamp_min(1e-30))
        if step > 0:
            ratios.append(ratio)
        print(f"| {step} | {float(clip_grad.norm()):.3g} | {float(edge_grad.norm()):.3g} | {ratio:.3g} |", flush=True)
    if ratios:
        print(f"\nmedian structure / CLIP gradient ratio on the control points (steps 1-{args.steps - 1}): "
              f"{statistics.median(ratios):.3g}")  # fmt: skip


if __name__ == "__main__":
    main()
