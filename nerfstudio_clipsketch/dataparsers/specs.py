"""Entry points for ``nerfstudio.dataparser_configs``.

nerfstudio loads this module while it builds its own list of dataparsers, so it (and what it imports) must not
import nerfstudio's pipelines or datamanagers (a circular import), nor open_clip or gsplat (slow, and not needed to
list parsers).
"""

from __future__ import annotations

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from nerfstudio_clipsketch.dataparsers.auto import ClipSketchDataParserConfig
from nerfstudio_clipsketch.dataparsers.clipasso3d import Clipasso3dDataParserConfig

clipasso3d_dataparser = DataParserSpecification(
    config=Clipasso3dDataParserConfig(),
    description="clipasso3d scenes: Blender cameras, images in rgb/<split>/, object re-centred at the origin.",
)

auto_dataparser = DataParserSpecification(
    config=ClipSketchDataParserConfig(),
    description="Detects the layout (clipasso3d, Blender, nerfstudio, COLMAP); no --data: the built-in scene.",
)
