"""``ns-train`` imports every installed plugin at start-up: ours must stay light and harmless to import."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # fresh interpreters: seconds each

CHECK = """
import sys, torch
import nerfstudio_clipsketch
import nerfstudio_clipsketch.method_config
from nerfstudio.plugins.registry import discover_methods
methods, descriptions = discover_methods()
assert "clipsketch" in methods, sorted(methods)
print("open_clip" in sys.modules, "gsplat.cuda._backend" in sys.modules, torch.cuda.is_initialized())
"""


def test_importing_the_method_loads_no_clip_no_cuda_backend_and_no_gpu():
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300,
        env={"CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["False", "False", "False"]


BATCH_CHECK = """
import sys
import nerfstudio_clipsketch.batch.driver, nerfstudio_clipsketch.batch.trial
print("ray" in sys.modules, "torch" in sys.modules)
"""


def test_the_batch_driver_and_a_runs_process_import_neither_ray_nor_torch():
    """Ray is imported only when a batch has runs to do; a trial's children are started without torch."""
    done = subprocess.run([sys.executable, "-c", BATCH_CHECK], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["False", "False"]
