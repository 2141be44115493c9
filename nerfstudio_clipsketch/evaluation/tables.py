"""A clipsketch-eval report (:mod:`.report`) as plain-text tables on the terminal: one grid printer for all."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape


def format_grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned, a rule under the header."""
    columns = list(zip(header, *rows)) if rows else [(h,) for h in header]
    widths = [max(len(str(cell)) for cell in column) for column in columns]

    def line(cells: Sequence[str]) -> str:
        first = f"{cells[0]:<{widths[0]}}"
        return "  ".join([first, *(f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:]))]).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def format_table(metrics: Dict[str, float], digits: int = 4) -> str:
    """A plain-text table of a metrics dict: thresholded metrics (``name@T``) in a grid, one column per ``T``.

    Metrics without ``@`` come first, one per row. Values are printed with ``digits`` significant digits.
    """

    def fmt(value: Any) -> str:
        return f"{value:.{digits}g}" if isinstance(value, (int, float)) else str(value)

    scalars = {k: v for k, v in metrics.items() if "@" not in k}
    grid: Dict[str, Dict[str, float]] = {}
    labels: List[str] = []
    for key, value in metrics.items():
        if "@" in key:
            name, label = key.split("@", 1)
            grid.setdefault(name, {})[label] = value
            labels += [label] if label not in labels else []
    name_width = max([len(k) for k in (*scalars, *grid)] + [6])
    lines = [f"{key:<{name_width}}  {fmt(value)}" for key, value in scalars.items()]
    if grid:
        rows = [[name] + [fmt(row[label]) if label in row else "" for label in labels] for name, row in grid.items()]
        lines += [""] if lines else []
        lines.append(format_grid(["metric".ljust(name_width), *labels], rows))
    return "\n".join(lines)


def print_report(report: Dict[str, Any]) -> None:
    """The report's main numbers as tables on the terminal."""
    sketch = "initial sketch" if report.get("initial") else f"step {report.get('step')}"
    CONSOLE.rule(f"clipsketch-eval: {report['num_curves']} curves, {sketch}")
    CONSOLE.print(escape(f"data {report['data']} ({report['layout']}), {report['split']} split"), highlight=False)
    lengths = report["curve_lengths"]
    CONSOLE.print(
        f"curve lengths (dataset units): total {report['total_length']:.4g}, shortest {min(lengths):.4g}, longest "
        f"{max(lengths):.4g}; {report['num_curve_points']} samples, {report['sample_spacing']:.3g} apart",
        highlight=False,
    )
    alive = report.get("strokes_alive")
    if alive:
        CONSOLE.print(
            f"strokes alive (at least {alive['min_length']:.3g} long, 2 % of the {alive['reference']} reference's "
            f"diagonal): {alive['count']} of {alive['of']}",
            highlight=False,
        )
    symmetry = report.get("symmetry")
    if symmetry:
        how = "tied across" if symmetry["tied"] else "untied; its best plane is"
        CONSOLE.print(
            f"symmetry: {how} {symmetry['plane']}, mirror distance {symmetry['score']:.4f} of the diagonal; "
            f"{symmetry['num_free_parameters']} of {symmetry['num_parameters']} parameters free",
            highlight=False,
        )
    sections = [
        ("Curves vs ground-truth curves", report.get("curves")),
        ("Curves vs surface", report.get("surface")),
        ("ABC-NEF sharp edges (NEF's protocol: 1/64 voxels, absolute thresholds)", report.get("abcnef")),
    ]
    for title, section in sections:
        if section is None or section.get("skipped"):
            continue
        numbers = {k: v for k, v in section.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        CONSOLE.print(f"[bold]{title}[/bold] (dataset units)")
        CONSOLE.print(escape(format_table(numbers)), highlight=False)
    rows = []
    for view in report["views"]:
        touch = view["foreground_touch"]
        similarity = f"{view['clip_similarity']:.5f}", f"{view['clip_similarity_blank']:.5f}"
        touched = f"{touch:.4f}" if touch is not None else "-"
        rows.append([str(view["index"]), *similarity, touched, view["mask"] or "-"])
    clip, touch = report["clip"], report.get("foreground_touch")
    if clip["similarity"] is not None:
        mean_touch = f"{touch['mean']:.4f}" if touch is not None and touch["mean"] is not None else "-"
        rows.append(["mean", f"{clip['similarity']:.5f}", f"{clip['similarity_blank']:.5f}", mean_touch, ""])
    CONSOLE.print("[bold]Test views[/bold]")
    header = ["view", "CLIP similarity", "blank canvas", "foreground touch", "mask"]
    CONSOLE.print(escape(format_grid(header, rows)), highlight=False)
    for note in report.get("notes", []):
        CONSOLE.print(f"[yellow]Note:[/yellow] {escape(note)}", highlight=False)
