"""Time and memory of one forward + backward render: the pair-list renderer against the dense baseline.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_renderer                      # CPU, prints a Markdown table
    .venv/bin/python -m benchmarks.bench_renderer --output table.md    # ... and writes it
    .venv/bin/python -m benchmarks.bench_renderer --device cuda        # gsplat against dense on a GPU

The scene is stroke-like, as a sketch is: ``num_gaussians / 50`` random cubic Bézier curves lying inside the view
7-9 units in front of one camera, 50 Gaussians per curve evenly spaced in arc length, each Gaussian of standard
deviation 1 px at its depth, opaque and black on white. One step renders the image, takes the mean squared error to a
fixed random target and back-propagates it to the Gaussian means (which is where a sketch's gradient flows to its
control points).

Each configuration runs in a fresh subprocess so that its memory is measured alone:

- CPU: the increase of the process's peak resident set size over its resident set size just before the first render
  (the peak is reset through ``/proc/self/clear_refs`` where Linux allows it, then read from ``getrusage``'s
  ``ru_maxrss``). It counts everything the renders touched: PyTorch's allocations, autograd's saved tensors and
  transient buffers, but not the libraries or the scene, which are already resident.
- CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated before the first render (tensors only, not
  the caching allocator's reserve or the CUDA context).

Times are the median (and range) of ``--repeats`` steps after ``--warmup`` untimed ones; on CUDA each step ends with
a synchronisation.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from nerfstudio_clipsketch import curves
from nerfstudio_clipsketch.rendering import render

SAMPLES_PER_CURVE = 50
CAMERA_ANGLE_X = 0.69  # the real scenes' field of view
TARGET_SECONDS, TARGET_MB = 0.5, 1024.0  # pair-list renderer, CPU, 224 x 224, 2,000 Gaussians


def make_stroke_scene(num_gaussians: int, width: int, height: int, device: torch.device, seed: int = 0) -> dict:
    """Gaussians along random Bézier curves inside the view of one OpenCV camera at the origin looking down +z."""
    if num_gaussians % SAMPLES_PER_CURVE:
        raise ValueError(f"num_gaussians must be a multiple of {SAMPLES_PER_CURVE}, got {num_gaussians}")
    g = torch.Generator().manual_seed(seed)
    num_curves = num_gaussians // SAMPLES_PER_CURVE
    f = 0.5 * width / math.tan(0.5 * CAMERA_ANGLE_X)
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    # Control points: pixels in the central 80 % of the image at depths 7-9, unprojected.
    uv = torch.rand(num_curves, 4, 2, generator=g) * 0.8 + 0.1
    z = 7.0 + 2.0 * torch.rand(num_curves, 4, 1, generator=g)
    xy = (uv * torch.tensor([width, height]) - K[:2, 2]) / f * z
    control_points = torch.cat([xy, z], dim=-1)
    t = curves.arc_length_parameters(control_points, SAMPLES_PER_CURVE)
    means = curves.evaluate(control_points, t).reshape(-1, 3)
    return {
        "means": means.to(device),
        "scales": (means[:, 2] / f).to(device),  # 1 px standard deviation at each Gaussian's depth
        "opacities": torch.ones(num_gaussians, device=device),
        "colors": torch.zeros(num_gaussians, 3, device=device),
        "viewmats": torch.eye(4, device=device)[None],
        "Ks": K[None].to(device),
        "background": torch.ones(3, device=device),
        "target": torch.rand(1, height, width, 3, generator=g).to(device),
        "num_curves": num_curves,
    }


def _renderer(name: str, device: torch.device):
    if name == "dense":
        from benchmarks.dense_renderer import render_dense

        return render_dense
    backend = "gsplat" if device.type == "cuda" else "torch"
    return lambda *args: render(*args, backend=backend)


def _current_rss_kb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024.0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def run_one(renderer: str, num_gaussians: int, resolution: int, device: str, warmup: int, repeats: int) -> dict:
    """Measure one configuration in this process; returns times in seconds and peak memory in MiB."""
    dev = torch.device(device)
    scene = make_stroke_scene(num_gaussians, resolution, resolution, dev)
    fn = _renderer(renderer, dev)
    means = scene["means"].clone().requires_grad_(True)
    args = [scene[k] for k in ("scales", "opacities", "colors", "viewmats", "Ks")]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def step() -> tuple[float, float, torch.Tensor]:
        means.grad = None
        sync()
        start = time.perf_counter()
        out = fn(means, *args, resolution, resolution, scene["background"])
        sync()
        forward = time.perf_counter() - start
        loss = ((out.rgb - scene["target"]) ** 2).mean()
        loss.backward()
        sync()
        return forward, time.perf_counter() - start, out.alpha.detach()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        peak_reset = _reset_peak_rss()
        base_kb = _current_rss_kb() if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(warmup):
        _, _, alpha = step()
    forwards, totals = [], []
    for _ in range(repeats):
        forward, total, alpha = step()
        forwards.append(forward)
        totals.append(total)
    if dev.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb) / 1024.0
    return {
        "renderer": renderer,
        "num_gaussians": num_gaussians,
        "num_curves": scene["num_curves"],
        "resolution": resolution,
        "device": device,
        "forward_s": statistics.median(forwards),
        "step_s": statistics.median(totals),
        "step_min_s": min(totals),
        "step_max_s": max(totals),
        "peak_mb": peak_mb,
        "inked_share": (alpha > 0.5).float().mean().item(),
        "threads": torch.get_num_threads(),
    }


def markdown_table(results: list[dict]) -> str:
    """The results as a Markdown table, with the CPU target checked on the pair-list rows it applies to."""
    header = (
        "| renderer | device | Gaussians (curves) | image | inked pixels | forward (s) | forward + backward (s), "
        "median [min–max] | peak memory (MiB) |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['renderer']} | {r['device']} | {r['num_gaussians']} | | | | failed: {r['error']} | |")
            continue
        name = {"pair": "pair list (gsplat)" if r["device"] == "cuda" else "pair list (torch)", "dense": "dense"}
        step = f"{r['step_s']:.3f} [{r['step_min_s']:.3f}–{r['step_max_s']:.3f}]"
        lines.append(
            f"| {name[r['renderer']]} | {r['device']} | {r['num_gaussians']} ({r['num_curves']}) | "
            f"{r['resolution']}² | {100 * r['inked_share']:.1f} % | {r['forward_s']:.3f} | {step} | "
            f"{r['peak_mb']:.0f} |"
        )
    return "\n".join(lines)


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--num-gaussians", type=int, nargs="+", default=[800, 2000])
    parser.add_argument("--renderers", nargs="+", choices=("pair", "dense"), default=["pair", "dense"])
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--output", type=Path, default=None, help="also write the Markdown table here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = _parse_args(argv)
    if args.child:
        (renderer,), (num_gaussians,) = args.renderers, args.num_gaussians
        result = run_one(renderer, num_gaussians, args.resolution, args.device, args.warmup, args.repeats)
        sys.stdout.write(json.dumps(result) + "\n")
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.stderr.write("No CUDA device: skipping the CUDA benchmark (run with --device cpu).\n")
        return
    load_before = os.getloadavg()[0]
    results = []
    for num_gaussians in args.num_gaussians:
        for renderer in args.renderers:
            command = [sys.executable, "-m", "benchmarks.bench_renderer", "--child", "--device", args.device]
            command += ["--renderers", renderer, "--num-gaussians", str(num_gaussians)]
            command += ["--resolution", str(args.resolution), "--warmup", str(args.warmup)]
            command += ["--repeats", str(args.repeats)]
            sys.stderr.write(f"{renderer} renderer, {num_gaussians} Gaussians ...\n")
            proc = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
                results.append(
                    {"renderer": renderer, "num_gaussians": num_gaussians, "device": args.device, "error": tail[0]}
                )
            else:
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    table = markdown_table(results)
    threads = next((r["threads"] for r in results if "threads" in r), torch.get_num_threads())
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({threads} threads)"
    )
    if args.device == "cuda":
        machine += f", {torch.cuda.get_device_name()}"
    footer = [
        "",
        f"Command: `python -m benchmarks.bench_renderer {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"Machine: {machine}; date: {datetime.date.today().isoformat()}; 1-minute load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after (other work on the machine slows the runs).",
    ]
    if args.device == "cpu":
        for r in results:
            if r.get("renderer") == "pair" and r.get("num_gaussians") == 2000 and r.get("resolution") == 224:
                ok = r["step_s"] <= TARGET_SECONDS and r["peak_mb"] <= TARGET_MB
                footer.append(
                    f"Target (pair list, CPU, 224², 2,000 Gaussians: ≤ {TARGET_SECONDS} s and "
                    f"≤ {TARGET_MB:.0f} MiB): "
                    f"{'met' if ok else 'missed'} ({r['step_s']:.3f} s, {r['peak_mb']:.0f} MiB)."
                )
    text = table + "\n" + "\n".join(footer) + "\n"
    sys.stdout.write(text)
    if args.output is not None:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
