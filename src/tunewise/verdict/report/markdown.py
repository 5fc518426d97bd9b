"""The Markdown report: the HTML's content for a pull request, a wiki or a terminal.

Charts become tables of the numbers they plot, or a note where a table would add nothing new.
Every piece of the user's text is escaped for Markdown, so an input with '|' cannot break a
table and '<script>' shows as text in renderers that pass HTML through.
"""

from __future__ import annotations

import re
from functools import cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from tunewise.verdict.report.html import TEMPLATES
from tunewise.verdict.report.view import ReportView

# What is escaped, and only where it would act, so the raw file stays readable ("embed_classifier",
# "p < 0.001"): backslashes, code ticks, emphasis stars, links, table pipes, tildes and "$" (GitHub
# reads $...$ as maths) everywhere; "_" where it could open or close emphasis (not inside a word);
# "<" where it could open an HTML tag; "&" where it would spell an entity; "#" and ">" at the start.
_ALWAYS = re.compile(r"([\\`*\[\]|~$])")
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")


def md_text(value: object) -> str:
    """Text safe inline in Markdown, on one line (a newline inside a list item or a cell ends it)."""
    text = " ".join(str(value).split())
    text = _ALWAYS.sub(r"\\\1", text)
    text = _UNDERSCORE.sub(r"\\_", text)
    text = _TAG_OPEN.sub(r"\\<", text)
    text = _ENTITY.sub("&amp;", text)
    return re.sub(r"^([#>])", r"\\\1", text)


def md_code(value: object) -> str:
    """Text in a code span: the fence is one backtick more than the longest run inside."""
    text = " ".join(str(value).split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_block(value: object) -> str:
    """A fenced code block's body with a fence longer than any backtick run inside it."""
    text = str(value)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return f"{'`' * max(3, longest + 1)}\n{text}\n{'`' * max(3, longest + 1)}"


@cache
def _environment() -> Environment:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=False, undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    environment.filters.update(md=md_text, code=md_code, block=md_block)
    return environment


def render_markdown(view: ReportView) -> str:
    text = _environment().get_template("report.md.j2").render(view=view)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
