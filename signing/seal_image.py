"""The visible seal: the familiar red round stamp, generated from the seal's data.

The department's name runs clockwise along the upper arc, a five-pointed star sits in the
middle and the seal's purpose (e.g. 业务专用章) is written below it, as on a physical
official seal. SVG is exact and needs no font on the server; the PNG (for PDF
appearances) is drawn with Pillow and needs a CJK font (Debian `fonts-wqy-zenhei` or
`fonts-noto-cjk`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

from signing.errors import SigningError

__all__ = ["FONT_CANDIDATES", "SEAL_RED", "find_cjk_font", "seal_png", "seal_svg"]

SEAL_RED = (214, 0, 15)
#: Where Debian's CJK font packages put their files (fonts-wqy-zenhei, fonts-noto-cjk,
#: fonts-wqy-microhei, fonts-arphic-uming).
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)


#: `escape` leaves quotes alone; inside an attribute value they must go too.
_ATTRIBUTE = {'"': "&quot;"}


def _layout(count: int) -> tuple[float, float]:
    """The arc the name spans (degrees, centred at the top) and the step between
    characters: short names are spaced like a stamp-maker would, long ones fill ~260°."""
    if count <= 1:
        return 0.0, 0.0
    step = min(34.0, 260.0 / (count - 1))
    return step * (count - 1), step


def _star_points(cx: float, cy: float, outer: float) -> list[tuple[float, float]]:
    inner = outer * 0.382  # regular pentagram: inner radius = outer × sin18°/sin54°
    points = []
    for i in range(10):
        radius = outer if i % 2 == 0 else inner
        angle = math.radians(-90 + i * 36)
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def seal_svg(department_name: str, purpose: str = "", *, size: int = 240) -> str:
    """The seal as a standalone SVG document (viewBox `size`×`size`)."""
    c = size / 2
    ring = size * 0.455
    text_radius = size * 0.325
    font = size * 0.115
    color = "#{:02X}{:02X}{:02X}".format(*SEAL_RED)
    chars = list(department_name)
    span, step = _layout(len(chars))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}" role="img" '
        f'aria-label="{escape(department_name, _ATTRIBUTE)}">',
        f'<circle cx="{c:.2f}" cy="{c:.2f}" r="{ring:.2f}" fill="none" stroke="{color}" '
        f'stroke-width="{size * 0.035:.2f}"/>',
        f"<g fill=\"{color}\" font-family=\"'Noto Serif CJK SC','Songti SC',SimSun,"
        f'\'WenQuanYi Zen Hei\',serif" font-weight="bold" text-anchor="middle">',
    ]
    for i, ch in enumerate(chars):
        angle = -span / 2 + i * step
        rad = math.radians(angle)
        x = c + text_radius * math.sin(rad)
        y = c - text_radius * math.cos(rad)
        parts.append(
            f'<text x="{x:.2f}" y="{y:.2f}" font-size="{font:.2f}" dominant-baseline="central" '
            f'transform="rotate({angle:.2f} {x:.2f} {y:.2f})">{escape(ch)}</text>'
        )
    star = " ".join(f"{x:.2f},{y:.2f}" for x, y in _star_points(c, c, size * 0.15))
    parts.append(f'<polygon points="{star}"/>')
    if purpose:
        parts.append(
            f'<text x="{c:.2f}" y="{c + size * 0.255:.2f}" font-size="{size * 0.085:.2f}" '
            f'dominant-baseline="central">{escape(purpose)}</text>'
        )
    parts.append("</g></svg>")
    return "".join(parts)


def find_cjk_font(candidates: Sequence[str] = FONT_CANDIDATES) -> str | None:
    for path in candidates:
        if Path(path).is_file():
            return path
    return None


@lru_cache(maxsize=64)
def _png_cached(department_name: str, purpose: str, size: int, font_path: str) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    scale = 2  # draw at twice the size and downsample: smooth edges without antialias flags
    big = size * scale
    c = big / 2
    color = (*SEAL_RED, 255)
    image = Image.new("RGBA", (big, big), (255, 255, 255, 0))
    draw = ImageDraw.Draw(image)
    ring = big * 0.455
    width = max(2, round(big * 0.035))
    draw.ellipse((c - ring, c - ring, c + ring, c + ring), outline=color, width=width)
    draw.polygon(_star_points(c, c, big * 0.15), fill=color)

    font = ImageFont.truetype(font_path, round(big * 0.115))
    chars = list(department_name)
    span, step = _layout(len(chars))
    text_radius = big * 0.325
    cell = round(big * 0.16)
    for i, ch in enumerate(chars):
        angle = -span / 2 + i * step
        glyph = Image.new("RGBA", (cell, cell), (255, 255, 255, 0))
        ImageDraw.Draw(glyph).text((cell / 2, cell / 2), ch, font=font, fill=color, anchor="mm")
        glyph = glyph.rotate(-angle, resample=Image.Resampling.BICUBIC, expand=True)
        rad = math.radians(angle)
        x = c + text_radius * math.sin(rad)
        y = c - text_radius * math.cos(rad)
        image.alpha_composite(glyph, (round(x - glyph.width / 2), round(y - glyph.height / 2)))
    if purpose:
        small = ImageFont.truetype(font_path, round(big * 0.085))
        draw.text((c, c + big * 0.255), purpose, font=small, fill=color, anchor="mm")
    image = image.resize((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def seal_png(
    department_name: str, purpose: str = "", *, size: int = 480, font_path: str | None = None
) -> bytes:
    """The seal as a transparent PNG of `size`×`size` pixels."""
    font = font_path or find_cjk_font()
    if font is None:
        raise SigningError(
            "no CJK font for the seal image",
            detail="install fonts-wqy-zenhei or fonts-noto-cjk",
        )
    if not 64 <= size <= 2048:
        raise SigningError("seal image size must be between 64 and 2048 pixels")
    return _png_cached(department_name, purpose, size, font)
