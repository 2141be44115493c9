"""CLIP's share of a training step in each precision setting, beside the plain fp32 RN101 work it contains.

For each setting (``precision`` × ``channels_last`` of :class:`~nerfstudio_clipsketch.clip_guidance.ClipGuidanceConfig`)
this times ``ClipGuidance.loss`` forward + backward to the sketch image, one 224² view with CLIPasso's 4
augmentations (5 sketch images with gradients, 4 augmented targets without), median of ``--repeats`` after a
warm-up, and the loss's relative difference from fp32 on the same images and augmentations. The reference row
``plain fp32 RN101`` is the bare network on the same batch sizes (forward 9, backward 5), without the loss around it:
the issue's "fp32 RN101 work a step contains". All in one process, one after the other; RN101 with random weights
(the cost is the same with trained ones).

Usage::

    python -m benchmarks.bench_precision --repeats 5
    python -m benchmarks.bench_precision --precisions bf16 --layouts channels_last --repeats 2   # slow without bf16
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, List

import torch

from nerfstudio_clipsketch.clip_guidance import ClipGuidanceConfig, autocast_dtype


def timed(step: Callable[[], None], repeats: int) -> List[float]:
    step()  # warm-up: oneDNN picks its kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="RN101")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--layouts", nargs="+", default=["contiguous", "channels_last"])
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    sketch = torch.rand(1, 224, 224, 3)
    target = torch.rand(1, 224, 224, 3)
    auto = autocast_dtype("auto", torch.device("cpu"))
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {capability}, auto precision: {auto}")
    print("| setting | median s [min–max] | × plain fp32 | loss vs fp32 |\n|---|---|---|---|")

    plain = ClipGuidanceConfig(model_name=args.model, pretrained="none", precision="fp32", channels_last=False).setup()
    visual = plain.model.visual

    def bare() -> None:
        with torch.no_grad():
            visual(torch.rand(4, 3, 224, 224))
        x = torch.rand(5, 3, 224, 224, requires_grad=True)
        visual(x).sum().backward()

    reference = statistics.median(timed(bare, args.repeats))
    print(f"| plain fp32 {args.model} (fwd 9, bwd 5) | {reference:.3f} | 1.00 | – |", flush=True)
    with torch.no_grad():
        fp32_loss = float(sum(plain.loss(sketch, target, generator=torch.Generator().manual_seed(0)).values()))
    for precision in args.precisions:
        for channels_last in [layout == "channels_last" for layout in args.layouts]:
            guidance = ClipGuidanceConfig(
                model_name=args.model, pretrained="none", precision=precision, channels_last=channels_last
            ).setup()
            guidance.model.load_state_dict(plain.model.state_dict())

            def step() -> None:
                image = sketch.clone().requires_grad_(True)
                losses = guidance.loss(image, target, generator=torch.Generator().manual_seed(0))
                sum(losses.values()).backward()

            times = timed(step, args.repeats)
            with torch.no_grad():
                loss = float(sum(guidance.loss(sketch, target, generator=torch.Generator().manual_seed(0)).values()))
            median = statistics.median(times)
            print(
                f"| {precision}, channels_last={channels_last} | {median:.3f} [{min(times):.3f}–{max(times):.3f}] "
                f"| {median / reference:.2f} | {abs(loss - fp32_loss) / abs(fp32_loss):.2%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
