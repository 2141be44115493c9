"""``python -m benchmarks.family``: generates the parts not cached yet, optionally draws a contact sheet."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.family.parts import PARTS
from benchmarks.family.scene import default_output, ensure_family
from benchmarks.family.views import image_name


def contact_sheet(folders: Sequence[Path], path: Path, thumbnail: int = 160, columns: int = 6, view: int = 0) -> None:
    """One training view of every part, on white, cropped to the object and labelled with the part's name."""
    tiles: list[Image.Image] = []
    for folder in folders:
        image = Image.open(folder / image_name("train", view)).convert("RGBA")
        alpha = np.asarray(image)[..., 3]
        rows, cols = np.nonzero(alpha)
        margin = 4
        side = max(np.ptp(rows), np.ptp(cols)) // 2 + margin
        centre = ((rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2)
        crop = image.crop((centre[1] - side, centre[0] - side, centre[1] + side, centre[0] + side))
        tile = Image.new("RGBA", crop.size, (255, 255, 255, 255))
        tile.alpha_composite(crop)
        tile = tile.convert("RGB").resize((thumbnail, thumbnail), Image.LANCZOS)
        ImageDraw.Draw(tile).text((4, 2), folder.name, fill=(0, 0, 0))
        tiles.append(tile)
    rows_count = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * thumbnail, rows_count * thumbnail), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * thumbnail, (i // columns) * thumbnail))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.family", description=__doc__)
    parser.add_argument(
        "--output", type=Path, default=default_output(), help="folder of the parts (default: %(default)s)"
    )
    parser.add_argument("--parts", type=int, default=None, help="only the first N parts of the family")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help=f"only these parts: {', '.join(PARTS)}")
    parser.add_argument("--size", type=int, default=400, help="image width and height in pixels (400-800 are usual)")
    parser.add_argument("--sheet", type=Path, default=None, help="also write a contact sheet of the parts to this PNG")
    args = parser.parse_args(argv)
    names = args.only if args.only is not None else list(PARTS)
    if args.parts is not None:
        if args.parts < 1:
            parser.error(f"--parts must be at least 1, got {args.parts}")
        names = names[: args.parts]
    unknown = [name for name in names if name not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; the family has: {', '.join(PARTS)}")
    if args.size < 8:
        parser.error(f"--size must be at least 8 pixels, got {args.size}")
    started = time.perf_counter()
    folders = ensure_family(args.output, names, args.size)
    print(f"{len(folders)} parts in {args.output} ({args.size} px): {time.perf_counter() - started:.1f} s")
    if args.sheet is not None:
        contact_sheet(folders, args.sheet)
        print(f"contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
