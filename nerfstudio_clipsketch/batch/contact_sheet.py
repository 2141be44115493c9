"""The contact sheet of a batch: one tile per run, rows = captures, columns = settings (and their seeds).

Each tile is the run's final sketch from its fixed time-lapse view (:func:`.results.final_frame`), scaled to fit a
``tile_size`` square, labelled underneath with its setting (one swept flag a line), seed and final loss. The best of
a setting's seeds is framed in green; a run without a final frame (failed, stopped, not run) is a grey tile that
says so, with its error. :func:`sheet_layout` places the tiles (pure arithmetic, no drawing);
:func:`write_contact_sheet` draws them.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFont

MARGIN = 12
ROW_HEADER = 150
LINE_HEIGHT = 14
FONT_SIZE = 12


@dataclass(frozen=True)
class Palette:
    """The sheet's colours (RGB)."""

    best: Tuple[int, int, int] = (30, 160, 60)
    """Frame around the best seed's tile."""
    empty: Tuple[int, int, int] = (225, 225, 225)
    text: Tuple[int, int, int] = (20, 20, 20)
    error: Tuple[int, int, int] = (170, 20, 20)


COLOURS = Palette()

Box = Tuple[int, int, int, int]


@dataclass(frozen=True)
class TilePlacement:
    """Where one run's tile goes: its grid cell, the image's box and the label's first line."""

    run: str
    row: int
    column: int
    box: Box
    """``(left, top, right, bottom)`` of the tile's image square."""
    label_at: Tuple[int, int]


@dataclass(frozen=True)
class SheetLayout:
    width: int
    height: int
    captures: List[str]
    """Row labels, top to bottom."""
    columns: List[Tuple[str, int]]
    """(setting, seed) of each column, left to right."""
    tiles: List[TilePlacement]


def label_lines(row: Dict[str, Any]) -> List[str]:
    """A tile's label: the setting a line per swept flag, then seed and loss, then the status if not finished."""
    lines = row["setting"].split(",") if row["setting"] != "default" else ["default settings"]
    loss = row.get("loss")
    lines.append(f"seed {row['seed']}" + (f"  loss {loss:.4g}" if isinstance(loss, (int, float)) else ""))
    if row["status"] != "finished":
        lines.append(str(row["status"]))
    return lines


def sheet_layout(rows: Sequence[Dict[str, Any]], tile_size: int) -> SheetLayout:
    """Place one tile per row of the results table: a grid row per capture, a column per (setting, seed), both in
    the table's order; every cell as tall as the longest label needs."""
    captures: List[str] = []
    columns: List[Tuple[str, int]] = []
    for row in rows:
        captures += [row["capture"]] if row["capture"] not in captures else []
        column = (row["setting"], row["seed"])
        columns += [column] if column not in columns else []
    label_height = LINE_HEIGHT * max((len(label_lines(row)) for row in rows), default=1) + MARGIN // 2
    cell_w, cell_h = tile_size + MARGIN, tile_size + label_height + MARGIN
    tiles = []
    for row in rows:
        r, c = captures.index(row["capture"]), columns.index((row["setting"], row["seed"]))
        left, top = MARGIN + ROW_HEADER + c * cell_w, MARGIN + r * cell_h
        box = (left, top, left + tile_size, top + tile_size)
        tiles.append(TilePlacement(row["run"], r, c, box, (left, top + tile_size + MARGIN // 4)))
    width = MARGIN + ROW_HEADER + len(columns) * cell_w
    height = MARGIN + len(captures) * cell_h
    return SheetLayout(width, height, captures, columns, tiles)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1, or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(text: str, font, width: int) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _tile_image(row: Dict[str, Any], size: int, font) -> Image.Image:
    image = row.get("image")
    if image and Path(image).is_file():
        with Image.open(image) as source:
            sketch = source.convert("RGB")
        scale = size / max(sketch.size)
        # Small training images are enlarged pixel for pixel, so that strokes stay as sharp as rendered.
        resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST
        sketch = sketch.resize((round(sketch.width * scale), round(sketch.height * scale)), resample)
        tile = Image.new("RGB", (size, size), COLOURS.empty)
        tile.paste(sketch, ((size - sketch.width) // 2, (size - sketch.height) // 2))
        return tile
    tile = Image.new("RGB", (size, size), COLOURS.empty)
    draw = ImageDraw.Draw(tile)
    draw.text((6, 6), f"no sketch ({row['status']})", fill=COLOURS.text, font=font)
    chars = max(8, int((size - 12) / max(font.getlength("n"), 1)))
    for i, line in enumerate(textwrap.wrap(row.get("error") or "", chars)[: (size - 30) // LINE_HEIGHT]):
        draw.text((6, 26 + i * LINE_HEIGHT), line, fill=COLOURS.error, font=font)
    return tile


def write_contact_sheet(rows: Sequence[Dict[str, Any]], path: Path, tile_size: int = 192) -> SheetLayout:
    """Draw the contact sheet of ``rows`` (the results table) as a PNG at ``path``; returns its layout."""
    layout = sheet_layout(rows, tile_size)
    sheet = Image.new("RGB", (layout.width, layout.height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(FONT_SIZE)
    for r, capture in enumerate(layout.captures):
        top = layout.tiles[[t.row for t in layout.tiles].index(r)].box[1]
        for i, line in enumerate(textwrap.wrap(capture, 18)[:6]):
            y = top + tile_size // 2 - LINE_HEIGHT + i * LINE_HEIGHT
            draw.text((MARGIN, y), line, fill=COLOURS.text, font=font)
    for row, tile in zip(rows, layout.tiles):
        sheet.paste(_tile_image(row, tile_size, font), tile.box[:2])
        if row.get("best"):
            left, top, right, bottom = tile.box
            draw.rectangle((left - 3, top - 3, right + 2, bottom + 2), outline=COLOURS.best, width=3)
        x, y = tile.label_at
        for i, line in enumerate(label_lines(row)):
            colour = COLOURS.text if i < len(label_lines(row)) - 1 or row["status"] == "finished" else COLOURS.error
            draw.text((x, y + i * LINE_HEIGHT), _fit(line, font, tile_size), fill=colour, font=font)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return layout
