"""CLIP forward + backward with the augmented targets inside the gradient batch, or in a separate no-grad forward.

``ClipGuidance.loss`` encodes the sketch views (with gradients) and the augmented targets (without) in two batches:
in one batch, CLIP's backward would also run over the targets. This measures both ways on random images, RN101 with
random weights, 5 sketches + 4 targets at 224² (one view, 4 augmentations)::

    python -m benchmarks.bench_clip_batch --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nerfstudio_clipsketch.clip_guidance import ClipGuidanceConfig


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="RN101")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    guidance = ClipGuidanceConfig(model_name=args.model, pretrained="none").setup()
    sketches = torch.rand(5, 3, 224, 224, requires_grad=True)
    targets = torch.rand(4, 3, 224, 224)

    def one_batch() -> None:
        layers, fc = guidance.encode(torch.cat([sketches, targets]))
        (sum(f[:5].square().mean() for f in layers) + fc[:5].sum()).backward()

    def two_batches() -> None:
        layers, fc = guidance.encode(sketches)
        with torch.no_grad():
            guidance.encode(targets)
        (sum(f.square().mean() for f in layers) + fc.sum()).backward()

    times = {one_batch: [], two_batches: []}
    for fn in times:
        fn()  # warm-up
    for _ in range(args.repeats):
        for fn, record in times.items():
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    for fn, record in times.items():
        print(f"{fn.__name__}: median {statistics.median(record):.3f} s over {len(record)} (min {min(record):.3f})")


if __name__ == "__main__":
    main()
