"""Time one clipsketch training step, split into its parts, beside a dense renderer of the ancestor's kind.

A step is: Gaussians from the curves + render (forward), the CLIPasso loss (CLIP forward over the view and its
augmentations), CLIP backward (to the rendered image), render backward (to the control points), and the optimiser.
The parts are separated by rendering, detaching the image, and back-propagating in two stages, which computes the
same gradients as one ``loss.backward()``.

Each configuration runs in a fresh subprocess so its peak memory is its own: on the CPU the peak resident set size
(``VmHWM`` after the model is built, minus the resident size before the first step: the step's own working memory,
CLIP's weights excluded); on CUDA ``torch.cuda.max_memory_allocated`` minus what was allocated before the first step.
The dense renderer is skipped where its ``[H, W, N]`` tensors would not fit (``--dense-budget-gb``).

The CLIP model is built with random weights (``pretrained none``): its cost is the same as with trained weights.

Usage (CPU here; on a GPU machine add ``--device cuda``, where the default renderer is gsplat)::

    python -m benchmarks.bench_step --output benchmarks/results_step_cpu.md
    python -m benchmarks.bench_step --resolutions 224 --curves 16 --repeats 2   # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.scene_box import SceneBox

from nerfstudio_clipsketch.cameras import get_viewmats
from nerfstudio_clipsketch.clip_guidance import ClipGuidanceConfig
from nerfstudio_clipsketch.model import ClipSketchModelConfig
from nerfstudio_clipsketch.rendering import render

GAUSSIANS_PER_CURVE = 64
PARTS = ("render_fwd", "clip_fwd", "clip_bwd", "render_bwd", "optimiser")


def _rss_kb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return float("nan")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _cameras(resolution: int, device: torch.device, count: int = 8) -> Cameras:
    """A ring of cameras 3 units from the origin, looking at it, with a 40 degree field of view."""
    c2ws = []
    for i in range(count):
        angle = 2 * math.pi * i / count
        eye = torch.tensor([3.0 * math.cos(angle), 3.0 * math.sin(angle), 1.0])
        back = eye / eye.norm()
        right = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]), back)
        right = right / right.norm()
        c2ws.append(torch.stack([right, torch.linalg.cross(back, right), back, eye], dim=1))
    focal = resolution / (2 * math.tan(math.radians(20)))
    return Cameras(
        camera_to_worlds=torch.stack(c2ws), fx=focal, fy=focal, cx=resolution / 2, cy=resolution / 2,
        width=resolution, height=resolution, camera_type=CameraType.PERSPECTIVE,
    ).to(device)


def measure(num_curves: int, resolution: int, renderer: str, device: str, clip_model: str, repeats: int) -> dict:
    """One configuration, in this process."""
    dev = torch.device(device)
    config = ClipSketchModelConfig(
        num_curves=num_curves,
        gaussians_per_curve=GAUSSIANS_PER_CURVE,
        init_radius=0.25,
        init_length=0.15,
        clip=ClipGuidanceConfig(model_name=clip_model, pretrained="none"),
    )
    model = config.setup(scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=1).to(dev)
    cameras = _cameras(resolution, dev)
    model.setup_from_data(cameras.to("cpu"), background=torch.ones(3))
    camera = cameras[0:1]
    model.to(dev)
    guidance = config.clip.setup(device=dev)
    model.use_guidance(guidance)
    optimiser = torch.optim.Adam([model.control_points], lr=1e-3)
    target = torch.rand(1, resolution, resolution, 3, generator=torch.Generator().manual_seed(0)).to(dev)
    if renderer == "dense":
        from benchmarks.dense_renderer import render_dense as render_fn
    else:
        backend = "gsplat" if dev.type == "cuda" else "torch"

        def render_fn(*args, **kwargs):
            return render(*args, backend=backend, **kwargs)

    viewmats = get_viewmats(camera.camera_to_worlds)
    Ks = camera.get_intrinsics_matrices()

    def sync() -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter()

    def step() -> dict:
        t0 = sync()
        means, scales, opacities, colors = model.gaussians()
        out = render_fn(means, scales, opacities, colors, viewmats, Ks, resolution, resolution, model.style.background,
                        eps2d=config.eps2d)
        t1 = sync()
        image = out.rgb.detach().requires_grad_()
        loss = sum(guidance.loss(image, target, generator=model.generator, target_keys=["target"]).values())
        t2 = sync()
        loss.backward()
        t3 = sync()
        out.rgb.backward(image.grad)
        t4 = sync()
        optimiser.step()
        optimiser.zero_grad()
        t5 = sync()
        return dict(zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)))

    def out_alpha() -> torch.Tensor:
        with torch.no_grad():
            return render_fn(*model.gaussians(), viewmats, Ks, resolution, resolution, model.style.background).alpha

    step()  # warm-up; also fills the target-feature cache, as the first visit of a view does in training
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        _reset_peak_rss()
        base = _rss_kb("VmRSS")
    runs = [step() for _ in range(repeats)]
    if dev.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    else:
        peak_mb = (_rss_kb("VmHWM") - base) / 1024.0
    result = {part: statistics.median(r[part] for r in runs) for part in PARTS}
    result["total"] = statistics.median(sum(r.values()) for r in runs)
    result.update(
        num_curves=num_curves, num_gaussians=num_curves * GAUSSIANS_PER_CURVE, resolution=resolution,
        renderer=renderer, device=device, clip=clip_model, peak_mb=peak_mb, threads=torch.get_num_threads(),
        inked_share=float((out_alpha() > 0.5).float().mean()),
    )
    return result


def dense_bytes(num_gaussians: int, resolution: int) -> float:
    """Rough working memory of the dense renderer: about eight float32 [H, W, N] tensors live for the backward."""
    return 8 * 4.0 * resolution * resolution * num_gaussians


def run_in_subprocess(args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_step", "--single", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(results: list[dict]) -> str:
    rows = [
        "| resolution | curves | Gaussians | renderer | render fwd | CLIP fwd | CLIP bwd | render bwd | optimiser "
        "| step (s) | peak MiB | dense / pair-list: step, memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    pair = {(r["resolution"], r["num_curves"]): r for r in results if r.get("renderer") == "pair-list"}
    for r in results:
        if "error" in r or "skipped" in r:
            why = r.get("skipped") or r.get("error")
            rows.append(f"| {r['resolution']} | {r['num_curves']} | {r['num_curves'] * GAUSSIANS_PER_CURVE} "
                        f"| {r['renderer']} | – | – | – | – | – | – | – | {why} |")
            continue
        ratio = ""
        base = pair.get((r["resolution"], r["num_curves"]))
        if r["renderer"] == "dense" and base:
            ratio = f"{r['total'] / base['total']:.1f}x, {r['peak_mb'] / max(base['peak_mb'], 1e-6):.1f}x"
        rows.append(
            f"| {r['resolution']} | {r['num_curves']} | {r['num_gaussians']} | {r['renderer']} | "
            + " | ".join(f"{r[p]:.3f}" for p in PARTS)
            + f" | {r['total']:.3f} | {r['peak_mb']:.0f} | {ratio} |"
        )
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[224, 512])
    parser.add_argument("--curves", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--clip-model", default="RN101")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dense-budget-gb", type=float, default=12.0)
    parser.add_argument("--no-dense", action="store_true")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--renderer", default="pair-list", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("No CUDA device: run with --device cpu")
        return
    if args.single:
        result = measure(args.curves[0], args.resolutions[0], args.renderer, args.device, args.clip_model, args.repeats)
        print(json.dumps(result))
        return
    results = []
    for resolution in args.resolutions:
        for curves in args.curves:
            for renderer in ("pair-list",) if args.no_dense else ("pair-list", "dense"):
                n = curves * GAUSSIANS_PER_CURVE
                if renderer == "dense" and dense_bytes(n, resolution) > args.dense_budget_gb * 2**30:
                    gb = dense_bytes(n, resolution) / 2**30
                    results.append({"resolution": resolution, "num_curves": curves, "renderer": renderer,
                                    "skipped": f"dense not run: needs ~{gb:.0f} GB"})
                else:
                    common = ["--device", args.device, "--clip-model", args.clip_model, "--repeats", str(args.repeats)]
                    result = run_in_subprocess(
                        [*common, "--resolutions", str(resolution), "--curves", str(curves), "--renderer", renderer]
                    )
                    result.setdefault("resolution", resolution)
                    result.setdefault("num_curves", curves)
                    result.setdefault("renderer", renderer)
                    results.append(result)
                print(json.dumps(results[-1]), flush=True)
    table = markdown(results)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")


if __name__ == "__main__":
    main()
