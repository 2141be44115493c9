"""How strong the structure terms (``edges``, ``ridges``) pull beside CLIP's terms: gradient norms on the control
points.

Sets up the training pipeline on a scene (default settings, RN101 with random weights unless ``--pretrained``), then
for ``--steps`` training steps computes the gradient of CLIP's terms (``clip_*``), of the image structure term and of
the ridge term on the control points separately, and takes an Adam step on their sum as training does (so the
balances, :class:`~nerfstudio_clipsketch.balance.GradientBalance`, settle as they would). Prints per step the norms
and their ratios to CLIP's, then the median ratios over the steps after the first. The ridge term is silent (0) while
every stroke lies on the hull's ridges.

Usage::

    python -m benchmarks.bench_gradients --data ../shared/data/clipasso3d/rose --steps 12
    python -m benchmarks.bench_gradients --data ... --edge-weight 2 --ridge-weight 1
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
from nerfstudio_clipsketch.terms.edges import EdgeTermConfig
from nerfstudio_clipsketch.terms.ridges import RidgeTermConfig


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--edge-weight", type=float, default=EdgeTermConfig.weight)
    parser.add_argument("--ridge-weight", type=float, default=RidgeTermConfig.weight)
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    config = ClipSketchPipelineConfig(
        datamanager=ClipSketchDataManagerConfig(dataparser=ClipSketchDataParserConfig(data=args.data)),
        model=ClipSketchModelConfig(
            edges=EdgeTermConfig(weight=args.edge_weight),
            ridges=RidgeTermConfig(weight=args.ridge_weight),
            clip=ClipGuidanceConfig(pretrained=args.pretrained),
        ),
    )
    pipeline = config.setup(device="cpu", test_mode="val")
    model = pipeline.model
    model.train()
    optimizer = torch.optim.Adam([model.control_points], lr=args.lr)
    print(f"{args.data.name}: init {model.init_method}, edge weight {args.edge_weight}, "
          f"ridge weight {args.ridge_weight}")  # fmt: skip
    print("| step | CLIP terms' gradient norm | structure term's | ridge term's | structure / CLIP | ridges / CLIP |")
    print("|---|---|---|---|---|---|")
    ratios, ridge_ratios = [], []
    for step in range(args.steps):
        cameras, batch = pipeline.datamanager.next_train(step)
        losses = model.get_loss_dict(model.get_outputs(cameras), batch)
        clip = sum(v for k, v in losses.items() if k.startswith("clip"))
        (clip_grad,) = torch.autograd.grad(clip, model.control_points, retain_graph=True)
        (edge_grad,) = torch.autograd.grad(losses["edges"], model.control_points, retain_graph=True)
        ridges = losses.get("ridges", torch.zeros(()))
        ridge_norm = 0.0
        if ridges.requires_grad:
            (ridge_grad,) = torch.autograd.grad(ridges, model.control_points, retain_graph=True)
            ridge_norm = float(ridge_grad.norm())
        optimizer.zero_grad()
        sum(losses.values()).backward()  # also lets the balances see the gradients, as in training
        optimizer.step()
        model.resample_gaussians()
        clip_norm = max(float(clip_grad.norm()), 1e-30)
        ratio, ridge_ratio = float(edge_grad.norm()) / clip_norm, ridge_norm / clip_norm
        if step > 0:
            ratios.append(ratio)
            ridge_ratios.append(ridge_ratio)
        print(f"| {step} | {clip_norm:.3g} | {float(edge_grad.norm()):.3g} | {ridge_norm:.3g} | {ratio:.3g} | "
              f"{ridge_ratio:.3g} |", flush=True)  # fmt: skip
    if ratios:
        print(f"\nmedian gradient ratios on the control points (steps 1-{args.steps - 1}): structure / CLIP "
              f"{statistics.median(ratios):.3g}, ridges / CLIP {statistics.median(ridge_ratios):.3g}")  # fmt: skip


if __name__ == "__main__":
    main()
