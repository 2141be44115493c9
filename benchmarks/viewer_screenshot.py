"""Screenshot of nerfstudio's viewer during a clipsketch run: the rendered sketch with its curves drawn as splines.

It starts a short CPU ``ns-train clipsketch`` on the built-in scene with a tiny random CLIP and the viewer on a free
local port, waits for training to finish (the viewer stays up: ``--viewer.quit-on-train-completion False``), opens
the viewer in headless Chromium, dollies the camera out with the mouse wheel (viser's default camera sits inside the
sketch), takes a screenshot, then stops both processes. The picture shows the render (black strokes), the splines
over it (orange) and the "Custom Elements" controls (Show curves, Curve width, Stroke width).

Chromium is driven through the Chrome DevTools protocol over ``websockets`` (already a dependency of viser): a plain
``chromium --screenshot`` does capture the render, but only from the default camera. With ``--disable-gpu``
Chromium draws WebGL with SwiftShader (``--enable-unsafe-swiftshader`` is needed by recent Chromium versions).

clipsketch turns the viewer's depth compositing off by default (the splines lie at the strokes' own depth, so the
rendered strokes would cover them); ``--composite-depth`` turns it on to check that case.

Run from the repository root (on Debian: ``apt-get install -y chromium`` first)::

    .venv/bin/python -m benchmarks.viewer_screenshot            # -> benchmarks/viewer_screenshot.png, about a minute
    .venv/bin/python -m benchmarks.viewer_screenshot --steps 100 --output /tmp/shot.png --log /tmp/ns-train.log

The output is a 1280x960 PNG of about 150 KB.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

from websockets.sync.client import ClientConnection, connect

from tests.conftest import TINY_CLIP

REPO = Path(__file__).resolve().parents[1]
WINDOW = (1280, 960)
SIDE_PANEL_PX = 320
"""Width of viser's control panel on the right: the 3D view is the rest of the window."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a process started here in its own session, with everything it started."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def train_command(run_dir: Path, port: int, steps: int, composite_depth: bool) -> List[str]:
    clip_config = run_dir / "clipsketch-tiny-rn.json"
    clip_config.write_text(json.dumps(TINY_CLIP))
    ns_train = shutil.which("ns-train", path=str(Path(sys.executable).parent)) or "ns-train"
    return [
        ns_train, "clipsketch",
        "--output-dir", str(run_dir / "outputs"),
        "--vis", "viewer",
        "--viewer.websocket-port", str(port),
        "--viewer.websocket-host", "127.0.0.1",
        "--viewer.quit-on-train-completion", "False",
        "--viewer.default-composite-depth", str(composite_depth),
        "--machine.device-type", "cpu",
        "--max-num-iterations", str(steps),
        "--pipeline.model.clip.pretrained", "none",
        "--pipeline.model.clip.model-config", str(clip_config),
        "--pipeline.model.clip.model-name", clip_config.stem,
        "--pipeline.model.clip.layer-weights", "0.0", "1.0", "1.0", "1.0", "0.0",
    ]  # fmt: skip


def launch_chromium(chromium: str, profile: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def page_websocket_url(profile: Path) -> str:
    """The DevTools endpoint of Chromium's first page (Chromium writes its port into the profile)."""
    active = profile / "DevToolsActivePort"
    wait_until(lambda: active.is_file() and active.read_text().strip(), 30, "Chromium's DevTools port")
    port = int(active.read_text().split()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
        pages = [t for t in json.load(response) if t["type"] == "page"]
    return pages[0]["webSocketDebuggerUrl"]


class DevTools:
    """The smallest Chrome DevTools protocol client: one page, one command at a time."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> Dict[str, Any]:
        call_id = next(self.ids)
        self.socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.socket.recv(timeout=60))
            if reply.get("id") == call_id:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method} failed: {reply['error']}")
                return reply.get("result", {})

    def text(self) -> str:
        result = self.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
        return result["result"].get("value", "")


def take_screenshot(url: str, output: Path, chromium: str, zoom_out: int, settle: float) -> None:
    with tempfile.TemporaryDirectory(prefix="clipsketch-chromium-") as profile:
        process = launch_chromium(chromium, Path(profile))
        try:
            with connect(page_websocket_url(Path(profile)), max_size=None, open_timeout=10) as socket:
                browser = DevTools(socket)
                # The headless window's viewport is smaller than --window-size: fix it.
                browser.call(
                    "Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1], deviceScaleFactor=1,
                    mobile=False,
                )  # fmt: skip
                browser.call("Page.enable")
                browser.call("Page.navigate", url=url)
                wait_until(lambda: "Connected" in browser.text(), 60, "the viewer page to connect")
                time.sleep(settle)  # first render and the spline messages
                # Dolly out with the mouse wheel over the 3D view (camera-controls), a tick at a time.
                x, y = (WINDOW[0] - SIDE_PANEL_PX) // 2, WINDOW[1] // 2
                for _ in range(zoom_out):
                    browser.call("Input.dispatchMouseEvent", type="mouseWheel", x=x, y=y, deltaX=0, deltaY=120)
                    time.sleep(0.05)
                time.sleep(settle)  # the viewer re-renders once the camera has stopped
                shot = browser.call("Page.captureScreenshot", format="png")
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_bytes(base64.b64decode(shot["data"]))
        finally:
            stop(process)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "viewer_screenshot.png")
    parser.add_argument("--steps", type=int, default=30, help="training steps before the screenshot")
    parser.add_argument("--port", type=int, default=None, help="viewer port (default: a free one)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--zoom-out", type=int, default=26, help="mouse-wheel ticks to dolly out of the sketch")
    parser.add_argument("--settle", type=float, default=6.0, help="seconds to let the viewer render")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for training")
    parser.add_argument(
        "--composite-depth",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="the viewer's 'Composite depth' at start (see the module docstring)",
    )
    parser.add_argument("--keep-run", action="store_true", help="keep the run's folder (printed)")
    parser.add_argument("--log", type=Path, default=None, help="write ns-train's output here")
    args = parser.parse_args(argv)
    if not Path(args.chromium).is_file():
        parser.error(f"Chromium not found at {args.chromium!r}: install it (apt-get install -y chromium) or --chromium")

    run_dir = Path(tempfile.mkdtemp(prefix="clipsketch-viewer-"))
    log_path = args.log or run_dir / "ns-train.log"
    port = args.port or free_port()
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        train = subprocess.Popen(
            train_command(run_dir, port, args.steps, args.composite_depth),
            cwd=run_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def finished() -> bool:
            if train.poll() is not None:
                raise RuntimeError(f"ns-train exited with {train.returncode}; see {log_path}")
            return "Training Finished" in log_path.read_text(errors="replace")

        wait_until(finished, args.timeout, "training to finish", poll=1.0)
        wait_until(lambda: port_open(port), 30, f"the viewer on port {port}")
        take_screenshot(f"http://127.0.0.1:{port}", args.output, args.chromium, args.zoom_out, args.settle)
    finally:
        stop(train)
        if not args.keep_run:
            shutil.rmtree(run_dir, ignore_errors=True)
    size_kb = args.output.stat().st_size / 1024
    print(f"wrote {args.output} ({size_kb:.0f} KB)" + (f"; run kept in {run_dir}" if args.keep_run else ""))


if __name__ == "__main__":
    main()
