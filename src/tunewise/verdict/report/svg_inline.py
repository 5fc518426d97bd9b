"""A matplotlib SVG made fit to sit inside an HTML page next to other SVGs.

matplotlib writes a standalone document: an XML prolog, a DOCTYPE, a fixed size in points,
metadata, comments, and ids ("DejaVuSans-41", "p3f2a1c9b0e") that repeat from one figure to
the next. Inlined as is, two charts would share ids (invalid HTML, and a hidden first chart
would blank the glyphs of the second). Here every id gets the chart's own prefix, the size
becomes "as wide as the column, aspect kept" through the viewBox, and a title and description
make the chart readable to screen readers.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_ID = re.compile(r'\bid="([^"]+)"')
_REFERENCE = re.compile(r'((?:xlink:)?href="#|url\(#)([^")]+)')
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_ROOT = re.compile(r"<svg\b[^>]*>", re.DOTALL)


def inline_svg(document: str, prefix: str, *, title: str, description: str) -> Markup:
    """The ``<svg>`` element of ``document``, ids prefixed with ``prefix``, ready to inline."""
    start = document.find("<svg")
    if start < 0:
        raise ValueError("not an SVG document: no <svg> element")
    svg = _METADATA.sub("", _COMMENT.sub("", document[start:])).strip()
    svg = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = _REFERENCE.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)
    root = _ROOT.search(svg)
    assert root is not None  # found above
    view_box = re.search(r'viewBox="([^"]+)"', root.group(0))
    if view_box is None:
        raise ValueError("the SVG has no viewBox, so it cannot scale to the column width")
    new_root = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                f'viewBox="{view_box.group(1)}" class="chart" role="img" preserveAspectRatio="xMidYMid meet" '
                f'aria-labelledby="{prefix}-title {prefix}-desc">'
                f'<title id="{prefix}-title">{escape(title)}</title>'
                f'<desc id="{prefix}-desc">{escape(description)}</desc>')
    return Markup(svg[: root.start()] + new_root + svg[root.end():])
