"""The HTML report: one self-contained file (CSS and SVG charts inline, no scripts, no network)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from tunewise.verdict.report.charts import Chart
from tunewise.verdict.report.view import ReportView

TEMPLATES = Path(__file__).parent / "templates"


def breakable(text: str) -> Markup:
    """Escape, then allow a line break after '@', '/', ':' and '_', so a long arm name such as
    few_shot_nearest@smollm2-135m-instruct wraps in a narrow column instead of widening it."""
    escaped = str(escape(text))
    for mark in ("@", "/", ":", "_"):
        escaped = escaped.replace(mark, f"{mark}<wbr>")
    return Markup(escaped)


@cache
def _environment() -> Environment:
    # Autoescape everything: inputs, outputs, arm names and card fields are the user's text.
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                              keep_trailing_newline=True)
    environment.filters["breakable"] = breakable
    return environment


def render_html(view: ReportView, charts: dict[str, Chart | None]) -> str:
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    template = _environment().get_template("report.html.j2")
    return template.render(view=view, charts=charts, css=Markup(css))
