"""The sketch's curves in nerfstudio's viewer: viser splines drawn over the render, and the GUI controls for them.

nerfstudio's viewer (``nerfstudio.viewer.viewer.Viewer``) walks the model's public attributes when it starts: each
``ViewerElement`` (checkbox, slider) goes into the control panel under "Custom Elements", and each ``ViewerControl``
gets the viser server through ``ViewerControl._setup``. :class:`SketchSplines` is such a control: once attached it
draws every curve as one viser cubic Bézier spline, node ``{name}/curve_000``, ``curve_001``, ...

Frame
    The viewer shows nerfstudio's normalised world scaled by ``VISER_NERFSTUDIO_SCALE_RATIO`` (10), with no other
    transform: training-camera frustums are placed at ``c2w[:3, 3] * VISER_NERFSTUDIO_SCALE_RATIO``. Curve points
    get the same scale, so the splines sit on the rendered strokes.

Degrees
    viser draws cubic segments. Curves of degree 1, 2 and 3 are drawn exactly (degree elevation). A curve of degree
    n >= 4 has no exact cubic form; it is drawn as ``HIGH_DEGREE_SEGMENTS`` cubic Hermite pieces that interpolate the
    curve's points and tangents at ``t = k / segments`` (C1, error ``<= h^4 / 384 * max |B''''|`` with
    ``h = 1 / segments``), see :func:`cubic_spline_from_bezier`.

Cost
    Drawing copies the control points to the CPU (one small host sync) and sends ``num_curves`` messages. During
    training it runs from a training callback between steps, at most every ``every_steps`` steps and every
    ``min_interval_s`` seconds (:class:`Throttle`), and never while the curves are hidden. Without a viewer (for
    example ``--vis tensorboard``) nothing is attached and the callbacks return at once.

Controls (``Custom Elements`` in the viewer's Control tab)
    - *Show curves*: draws the splines, or removes their scene nodes.
    - *Curve width (px)*: the splines' line width on screen.
    - *Stroke width (px)*: the width the model renders strokes with, in the units of ``--pipeline.model.stroke-width``
      (:mod:`nerfstudio_clipsketch.sketch`). It is handed to the model's setter, so the next viewer frame shows it,
      training continues with it and checkpoints save it; :meth:`SketchSplines.sync` reads it back after a
      checkpoint is loaded.

:class:`SketchSplines` knows the sketch only through the callables it is given (the curves' control points, the
stroke width and its setter), never through the model's buffers.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

import torch
from jaxtyping import Float
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO
from nerfstudio.viewer.viewer_elements import ViewerCheckbox, ViewerControl, ViewerSlider
from torch import Tensor
from viser import SceneNodeHandle, ViserServer

from nerfstudio_clipsketch import curves

if TYPE_CHECKING:
    from nerfstudio.viewer.viewer import Viewer

HIGH_DEGREE_SEGMENTS = 8
"""Cubic pieces per curve for curves of degree 4 and more."""
SPLINE_COLOR = (255, 90, 0)
"""Orange: readable over both light and dark sketches."""


def elevate_degree(
    control_points: Float[Tensor, "num_curves degree_plus_one dim"],
) -> Float[Tensor, "num_curves degree_plus_two dim"]:
    """The same curves with one more control point: ``Q_i = i/(n+1) P_{i-1} + (1 - i/(n+1)) P_i`` (exact)."""
    n = control_points.shape[-2] - 1
    a = torch.arange(1, n + 1, device=control_points.device, dtype=control_points.dtype)[:, None] / (n + 1)
    inner = a * control_points[:, :-1] + (1 - a) * control_points[:, 1:]
    return torch.cat([control_points[:, :1], inner, control_points[:, -1:]], dim=-2)


def cubic_spline_from_bezier(
    control_points: Float[Tensor, "num_curves degree_plus_one 3"], segments: int = HIGH_DEGREE_SEGMENTS
) -> Tuple[Float[Tensor, "num_curves num_knots 3"], Float[Tensor, "num_curves num_handles 3"]]:
    """Bézier curves as piecewise-cubic splines in viser's layout: ``knots`` (viser's ``positions``) and, per segment
    ``k``, the two inner handles ``handles[:, 2k]`` and ``handles[:, 2k + 1]`` (viser's ``control_points``).

    Segment ``k`` of the spline at local parameter ``s`` is the curve at ``t = (k + s) / num_segments``. Degrees 1-3
    give one exact segment (``num_knots = 2``). Degree 4 and up give ``segments`` cubic Hermite pieces matching the
    curve's points and tangents at their ends: an approximation, exact at the knots.
    """
    if control_points.dim() != 3 or control_points.shape[-1] != 3:
        raise ValueError(f"control points must be [num_curves, degree + 1, 3], got {tuple(control_points.shape)}")
    degree = control_points.shape[-2] - 1
    if degree < 1:
        raise ValueError(f"Bézier degree must be at least 1, got {degree}")
    if degree <= 3:
        cubic = control_points
        while cubic.shape[-2] < 4:
            cubic = elevate_degree(cubic)
        return cubic[:, [0, 3]], cubic[:, 1:3]
    if segments < 1:
        raise ValueError(f"segments must be at least 1, got {segments}")
    t = torch.linspace(0, 1, segments + 1, device=control_points.device, dtype=control_points.dtype)
    knots = curves.evaluate(control_points, t)  # [C, K+1, 3]
    # A cubic on [t_k, t_k + h] with end tangents B'(t) has handles at the ends +- h B'(t) / 3.
    step = curves.evaluate_derivative(control_points, t) / (3 * segments)
    handles = torch.stack([knots[:, :-1] + step[:, :-1], knots[:, 1:] - step[:, 1:]], dim=2)  # [C, K, 2, 3]
    return knots, handles.reshape(control_points.shape[0], 2 * segments, 3)


class Throttle:
    """Lets an event through at most once every ``every_steps`` steps and once every ``min_interval_s`` seconds
    (the first one always passes)."""

    def __init__(self, every_steps: int, min_interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if every_steps < 1:
            raise ValueError(f"every_steps must be at least 1, got {every_steps}")
        if min_interval_s < 0:
            raise ValueError(f"min_interval_s must be non-negative, got {min_interval_s}")
        self.every_steps = every_steps
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.last_step: Optional[int] = None
        self.last_time = float("-inf")

    def ready(self, step: int) -> bool:
        """Whether an event at ``step`` may happen now; if so, it counts as having happened."""
        now = self.clock()
        if self.last_step is not None and abs(step - self.last_step) < self.every_steps:
            return False
        if now - self.last_time < self.min_interval_s:
            return False
        self.last_step, self.last_time = step, now
        return True


class SketchSplines(ViewerControl):
    """Draws a sketch's curves as viser splines, and owns the GUI elements that control them (:attr:`elements`, which
    the model must expose as its own attributes: nerfstudio's viewer only looks for elements on the model and its
    submodules).

    Args:
        curves: returns the control points ``[num_curves, degree + 1, 3]`` in nerfstudio's world frame.
        num_curves: how many curves ``curves`` returns.
        stroke_width: returns the rendered stroke width (stroke pixels).
        set_stroke_width: renders strokes that wide from now on.
        every_steps: draw at most every this many training steps...
        min_interval_s: ...and at most every this many seconds.
        line_width: spline width on screen, in pixels.
        name: scene-tree folder of the spline nodes.
    """

    def __init__(
        self,
        curves: Callable[[], Tensor],
        num_curves: int,
        stroke_width: Callable[[], float],
        set_stroke_width: Callable[[float], None],
        every_steps: int = 10,
        min_interval_s: float = 0.5,
        line_width: float = 3.0,
        name: str = "/clipsketch_curves",
    ) -> None:
        self.curves = curves
        self.num_curves = num_curves
        self.stroke_width = stroke_width
        self._set_stroke_width = set_stroke_width
        self.throttle = Throttle(every_steps, min_interval_s)
        self.line_width = line_width
        self.name = name
        self.visible = True
        self.viser_server: Optional[ViserServer] = None  # type: ignore[assignment]
        self._nodes: List[SceneNodeHandle] = []
        width = float(stroke_width())
        self.show_element = ViewerCheckbox(
            "Show curves", True, cb_hook=lambda e: self.set_visible(e.value), hint="Draw the Bézier curves as splines"
        )
        self.curve_width_element = ViewerSlider(
            "Curve width (px)", line_width, 0.5, 10.0, 0.5, cb_hook=lambda e: self.set_line_width(e.value)
        )
        self.stroke_width_element = ViewerSlider(
            "Stroke width (px)",
            width,
            min(0.5, width),
            max(10.0, 4.0 * width),
            0.1,
            cb_hook=lambda e: self.set_stroke_width(e.value),
            hint="Rendered stroke width, as --pipeline.model.stroke-width (also used by training from now on)",
        )

    @property
    def elements(self) -> Tuple[ViewerCheckbox, ViewerSlider, ViewerSlider]:
        """Show curves, curve width and stroke width, in that order."""
        return self.show_element, self.curve_width_element, self.stroke_width_element

    # ----------------------------------------------------------------------------------------------------------------
    # Connection to the viewer

    def _setup(self, viewer: Viewer) -> None:
        """Called by nerfstudio's viewer once it runs: attach to its server (ns-train and ns-viewer alike)."""
        super()._setup(viewer)
        self.attach(viewer.viser_server)

    def attach(self, server: ViserServer) -> None:
        """Draw on ``server`` from now on (and now)."""
        self.viser_server = server
        self.draw()

    @property
    def node_names(self) -> List[str]:
        """Scene-tree names of the spline nodes, one per curve."""
        return [f"{self.name}/curve_{i:03d}" for i in range(self.num_curves)]

    # ----------------------------------------------------------------------------------------------------------------
    # Drawing

    @torch.no_grad()
    def draw(self) -> None:
        """Send the current curves to the viewer (nothing when detached or hidden)."""
        if self.viser_server is None or not self.visible:
            return
        points = self.curves().detach().cpu().double() * VISER_NERFSTUDIO_SCALE_RATIO
        knots, handles = (x.numpy() for x in cubic_spline_from_bezier(points))
        scene = self.viser_server.scene
        with self.viser_server.atomic():
            self._nodes = [
                scene.add_spline_cubic_bezier(
                    name, positions=knots[i], control_points=handles[i], line_width=self.line_width, color=SPLINE_COLOR
                )
                for i, name in enumerate(self.node_names)
            ]

    def remove(self) -> None:
        """Remove the spline nodes from the scene."""
        for node in self._nodes:
            node.remove()
        self._nodes = []

    def set_visible(self, visible: bool) -> None:
        self.visible = bool(visible)
        if self.visible:
            self.draw()
        else:
            self.remove()

    def set_line_width(self, line_width: float) -> None:
        if line_width <= 0:
            raise ValueError(f"curve line width must be positive (pixels), got {line_width}")
        self.line_width = float(line_width)
        self.draw()

    def set_stroke_width(self, stroke_width: float) -> None:
        """Render strokes ``stroke_width`` stroke pixels wide (the units of the config's ``stroke_width``)."""
        if stroke_width <= 0:
            raise ValueError(f"stroke width must be positive (pixels), got {stroke_width}")
        self._set_stroke_width(float(stroke_width))

    def sync(self) -> None:
        """Show the sketch's current stroke width on the slider (after a checkpoint brought another one)."""
        self.stroke_width_element.value = float(self.stroke_width())

    # ----------------------------------------------------------------------------------------------------------------
    # Training

    def on_train_step(self, step: int) -> None:
        if self.viser_server is not None and self.visible and self.throttle.ready(step):
            self.draw()

    def on_train_end(self, step: int) -> None:
        self.draw()

    def training_callbacks(self) -> List[TrainingCallback]:
        """Redraw between steps (throttled) and once more when training ends."""
        return [
            TrainingCallback(
                [TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                self.on_train_step,
                update_every_num_iters=self.throttle.every_steps,
            ),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self.on_train_end),
        ]
