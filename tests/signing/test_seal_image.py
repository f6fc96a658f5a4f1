"""The visible seal: department name along the arc, a star, the purpose below."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest

from signing.seal_image import find_cjk_font, seal_png, seal_svg

SVG = "{http://www.w3.org/2000/svg}"


def test_svg_has_name_star_and_purpose() -> None:
    svg = seal_svg("示范市<民政>局", "业务专用章")
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts[:-1] == list("示范市<民政>局")
    assert texts[-1] == "业务专用章"
    assert len(list(root.iter(f"{SVG}polygon"))) == 1
    assert root.find(f"{SVG}circle") is not None


def test_png_is_a_red_round_stamp() -> None:
    if find_cjk_font() is None:
        pytest.skip("no CJK font (apt-get install fonts-wqy-zenhei)")
    from PIL import Image

    image = Image.open(io.BytesIO(seal_png("示范市民政局", "业务专用章", size=200)))
    assert image.size == (200, 200) and image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0  # transparent corner
    r, g, b, a = image.getpixel((100, 100))  # the star's centre
    assert a > 200 and r > 180 and g < 60 and b < 60
    assert image.getpixel((100, 100 + 52))[3] > 0 or image.getpixel((100, 151))[3] >= 0
