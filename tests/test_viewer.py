"""The curves in nerfstudio's viewer: Bézier → viser splines, throttling, GUI controls, a real viser server."""

from __future__ import annotations

import math
import socket
import time
from typing import Dict

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.callbacks import TrainingCallbackAttributes
from nerfstudio.viewer.utils import parse_object
from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO
from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement

from nerfstudio_clipsketch import curves
from nerfstudio_clipsketch.strokes import stroke_sigma
from nerfstudio_clipsketch.viewer import Throttle, cubic_spline_from_bezier, elevate_degree
from tests import helpers


def viser_spline_points(knots: torch.Tensor, handles: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What viser's client draws (drei ``CubicBezierLine`` = three.js ``CubicBezierCurve3`` per segment), at global
    ``t`` in [0, 1] spread evenly over the segments. ``knots [C, K+1, 3]``, ``handles [C, 2K, 3]`` → ``[C, S, 3]``."""
    num_segments = knots.shape[1] - 1
    k = (t * num_segments).floor().long().clamp(max=num_segments - 1)
    s = (t * num_segments - k)[None, :, None]
    start, end = knots[:, k], knots[:, k + 1]
    mid_a, mid_b = handles[:, 2 * k], handles[:, 2 * k + 1]
    return (1 - s) ** 3 * start + 3 * (1 - s) ** 2 * s * mid_a + 3 * (1 - s) * s**2 * mid_b + s**3 * end


def random_curves(degree: int, num_curves: int = 5, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_curves, degree + 1, 3, generator=generator, dtype=torch.float64)


T = torch.linspace(0, 1, 101, dtype=torch.float64)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_low_degree_curves_are_drawn_exactly(degree):
    cp = random_curves(degree)
    knots, handles = cubic_spline_from_bezier(cp)
    assert knots.shape == (5, 2, 3) and handles.shape == (5, 2, 3)
    torch.testing.assert_close(viser_spline_points(knots, handles, T), curves.evaluate(cp, T))


def test_cubic_control_points_pass_through_unchanged():
    cp = random_curves(3)
    knots, handles = cubic_spline_from_bezier(cp)
    torch.testing.assert_close(torch.stack([knots[:, 0], handles[:, 0], handles[:, 1], knots[:, 1]], dim=1), cp)


def test_quadratic_elevation_has_the_textbook_handles():
    cp = random_curves(2)
    cubic = elevate_degree(cp)
    expected = torch.stack([cp[:, 0], (cp[:, 0] + 2 * cp[:, 1]) / 3, (2 * cp[:, 1] + cp[:, 2]) / 3, cp[:, 2]], dim=1)
    torch.testing.assert_close(cubic, expected)


def test_high_degree_curves_are_hermite_pieces_exact_at_the_knots():
    cp = random_curves(6)
    errors = []
    for segments in (4, 8):
        knots, handles = cubic_spline_from_bezier(cp, segments=segments)
        assert knots.shape == (5, segments + 1, 3) and handles.shape == (5, 2 * segments, 3)
        at_knots = torch.linspace(0, 1, segments + 1, dtype=torch.float64)
        torch.testing.assert_close(viser_spline_points(knots, handles, at_knots), curves.evaluate(cp, at_knots))
        errors.append(float((viser_spline_points(knots, handles, T) - curves.evaluate(cp, T)).norm(dim=-1).max()))
    scale = float(cp.abs().max())
    assert errors[1] < 1e-2 * scale, errors
    assert errors[1] < errors[0] / 8, errors  # fourth-order: halving h divides the error by about 16


def test_bad_control_points_are_rejected():
    with pytest.raises(ValueError, match=r"\[num_curves, degree \+ 1, 3\]"):
        cubic_spline_from_bezier(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="degree must be at least 1"):
        cubic_spline_from_bezier(torch.zeros(2, 1, 3))


def test_throttle_limits_by_steps_and_by_time():
    now = [0.0]
    throttle = Throttle(every_steps=10, min_interval_s=1.0, clock=lambda: now[0])
    assert throttle.ready(0)
    assert not throttle.ready(5)  # too few steps
    now[0] = 0.5
    assert not throttle.ready(10)  # enough steps, too soon
    now[0] = 1.0
    assert throttle.ready(10)
    now[0] = 5.0
    assert not throttle.ready(19)
    assert throttle.ready(20)
    with pytest.raises(ValueError, match="every_steps"):
        Throttle(every_steps=0, min_interval_s=1.0)


# ----------------------------------------------------------------------------------------------------------------------
# The model's controls


def ring_cameras() -> Cameras:
    return helpers.ring_cameras(n=6, size=32, focal=40.0, heights=(0.5,))


def make_model(**overrides):
    return helpers.make_model(**{"num_curves": 3, "gaussians_per_curve": 16, "stroke_width": 2.0, **overrides})


def test_nerfstudio_viewer_finds_the_controls(tiny_guidance):
    model = make_model()
    model.use_guidance(tiny_guidance)  # parse_object walks every public attribute, the guidance included
    elements = dict(parse_object(model, ViewerElement, "Custom Elements"))
    assert {
        "Custom Elements/viewer_curves_show",
        "Custom Elements/viewer_curves_width",
        "Custom Elements/viewer_stroke_width",
    } <= set(elements)
    controls = [c for _, c in parse_object(model, ViewerControl, "Custom Elements")]
    assert controls == [model.sketch_splines]


def test_stroke_width_control_rescales_stroke_scale():
    model = make_model()
    model.setup_from_data(ring_cameras(), background=torch.ones(3))
    world_per_pixel = float(model.style.sigma()) / stroke_sigma(2.0)  # fixed by the data's cameras
    # A pixel of a 224-px view: 32 / 224 pixels of these 32-px cameras, each distance / focal world units.
    assert world_per_pixel == pytest.approx(math.sqrt(3.0**2 + 0.5**2) / 40.0 * 32 / 224, rel=1e-3)
    element = model.viewer_stroke_width
    element.value = 5.0  # no GUI handle: sets the value the hook reads, as a GUI change would
    element.cb_hook(element)
    torch.testing.assert_close(float(model.style.sigma()), stroke_sigma(5.0) * world_per_pixel)
    element.value = 1.0
    element.cb_hook(element)
    torch.testing.assert_close(float(model.style.sigma()), stroke_sigma(1.0) * world_per_pixel)
    with pytest.raises(ValueError, match="stroke width must be positive"):
        model.sketch_splines.set_stroke_width(0.0)


def test_the_stroke_width_slider_follows_a_loaded_checkpoint():
    """A run whose width was changed in the viewer resumes with that width, and the slider shows it."""
    trained = make_model()
    trained.setup_from_data(ring_cameras(), background=torch.ones(3))
    trained.viewer_stroke_width.value = 4.5
    trained.viewer_stroke_width.cb_hook(trained.viewer_stroke_width)
    resumed = make_model()
    resumed.setup_from_data(ring_cameras(), background=torch.ones(3))
    assert resumed.viewer_stroke_width.value == 2.0  # the config's width, until the checkpoint is loaded
    resumed.load_state_dict(trained.state_dict())
    assert resumed.viewer_stroke_width.value == 4.5
    torch.testing.assert_close(resumed.style.sigma(), trained.style.sigma())


def test_spline_callbacks_are_registered_and_idle_without_a_viewer():
    model = make_model()
    callbacks = model.get_training_callbacks(TrainingCallbackAttributes(None, None, None, None))
    assert any(c.func == model.sketch_splines.on_train_step for c in callbacks)
    assert any(c.func == model.sketch_splines.on_train_end for c in callbacks)
    model.sketch_splines.on_train_step(step=0)  # no server attached: nothing to do, nothing raised
    assert model.sketch_splines.throttle.last_step is None


# ----------------------------------------------------------------------------------------------------------------------
# A real viser server (no browser): the scene state is what the server would send a newly connected client.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_splines(server) -> Dict[str, object]:
    """Spline nodes that exist on ``server``: replay of its persistent broadcast buffer."""
    from viser._messages import CubicBezierSplineMessage, RemoveSceneNodeMessage

    buffer = server._websock_server._broadcast_buffer
    with buffer.buffer_lock:
        messages = sorted(buffer.message_from_id.items())
    live: Dict[str, object] = {}
    for _, message in messages:
        if isinstance(message, CubicBezierSplineMessage):
            live[message.name] = message
        elif isinstance(message, RemoveSceneNodeMessage):
            live.pop(message.name, None)
    return live


def wait_for(condition, timeout: float = 5.0):
    """viser sends messages queued inside ``server.atomic()`` from a worker thread: poll briefly."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("viser scene did not reach the expected state")
        time.sleep(0.01)


@pytest.fixture
def viser_server():
    import viser

    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    yield server
    server.stop()


def test_splines_appear_follow_the_curves_and_hide(viser_server):
    model = make_model()
    model.setup_from_data(ring_cameras(), background=torch.ones(3))
    splines = model.sketch_splines
    splines.throttle.min_interval_s = 0.0
    splines.attach(viser_server)
    names = set(splines.node_names)
    wait_for(lambda: set(live_splines(viser_server)) == names)

    def drawn_points(name):
        message = live_splines(viser_server)[name]
        knots = torch.tensor(message.positions, dtype=torch.float64)[None]
        handles = torch.tensor(message.control_points, dtype=torch.float64)[None]
        return viser_spline_points(knots, handles, T)[0] / VISER_NERFSTUDIO_SCALE_RATIO

    def expected_points(i):
        return curves.evaluate(model.world_control_points().detach().double(), T)[i]

    torch.testing.assert_close(drawn_points(splines.node_names[1]), expected_points(1))

    # Training moves the curves: redrawn on a step the throttle lets through, not on the ones in between.
    with torch.no_grad():
        model.control_points.add_(0.1)
    splines.on_train_step(step=0)
    wait_for(lambda: torch.allclose(drawn_points(splines.node_names[1]), expected_points(1)))
    with torch.no_grad():
        model.control_points.add_(0.1)
    splines.on_train_step(step=3)
    time.sleep(0.1)
    assert not torch.allclose(drawn_points(splines.node_names[1]), expected_points(1))

    # The checkbox removes the nodes, and draws them again.
    model.viewer_curves_show.value = False
    model.viewer_curves_show.cb_hook(model.viewer_curves_show)
    wait_for(lambda: not live_splines(viser_server))
    splines.on_train_step(step=100)  # hidden: training does not bring them back
    time.sleep(0.1)
    assert not live_splines(viser_server)
    model.viewer_curves_show.value = True
    model.viewer_curves_show.cb_hook(model.viewer_curves_show)
    wait_for(lambda: set(live_splines(viser_server)) == names)
    torch.testing.assert_close(drawn_points(splines.node_names[2]), expected_points(2))

    # The width slider redraws with the new line width.
    model.viewer_curves_width.value = 6.0
    model.viewer_curves_width.cb_hook(model.viewer_curves_width)
    wait_for(lambda: all(m.line_width == 6.0 for m in live_splines(viser_server).values()))


def test_ns_viewer_on_a_finished_run_shows_the_sketch_and_its_splines(trained_run, tmp_path):
    """``ns-viewer --load-config <run>/config.yml`` (issue 25): what its ``_start_viewer`` builds, minus the endless
    wait: the checkpoint's curves are drawn as splines on the viewer's server as soon as it starts, and a frame
    rendered for the viewer shows the strokes."""
    import threading

    from nerfstudio.utils.eval_utils import eval_setup
    from nerfstudio.viewer.viewer import Viewer

    config, pipeline, _, step = eval_setup(trained_run, test_mode="test")
    config.viewer.websocket_port = free_port()
    viewer = Viewer(config.viewer, tmp_path / "viewer_log.txt", tmp_path, pipeline, train_lock=threading.Lock())
    try:
        model = pipeline.model
        splines = model.sketch_splines
        wait_for(lambda: set(live_splines(viewer.viser_server)) == set(splines.node_names))
        message = live_splines(viewer.viser_server)[splines.node_names[0]]
        knots = torch.tensor(message.positions, dtype=torch.float64)[None]
        handles = torch.tensor(message.control_points, dtype=torch.float64)[None]
        drawn = viser_spline_points(knots, handles, T)[0] / VISER_NERFSTUDIO_SCALE_RATIO
        expected = curves.evaluate(model.world_control_points().detach().double().cpu(), T)[0]
        torch.testing.assert_close(drawn, expected)
        frame = model.get_outputs_for_camera(pipeline.datamanager.train_dataset.cameras[0:1])
        assert float(frame["accumulation"].max()) > 0.5  # ink in the frame the viewer would show
    finally:
        viewer.viser_server.stop()
