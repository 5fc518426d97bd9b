"""The report: a verdict written for people, as HTML, Markdown and JSON.

``write_report(verdict.to_dict(), out_dir)`` writes three files side by side:

- ``report.html``: self-contained (CSS and SVG charts inline, no JavaScript, nothing fetched),
  readable on a laptop and on paper;
- ``report.md``: the same content for a pull request or a wiki, charts given as tables;
- ``report.json``: the verdict as given, plus a ``report`` block saying what was drawn and what
  was left out, and when and by which version it was written.

The verdict is checked against its contract first (see ``contract``): a missing key is an
error naming it, before any file is touched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tunewise.verdict.report.charts import render_charts
from tunewise.verdict.report.contract import SCHEMA_VERSION, ReportError, validate_verdict
from tunewise.verdict.report.html import render_html
from tunewise.verdict.report.markdown import render_markdown
from tunewise.verdict.report.view import build_view, goals, quality_scale

HTML_NAME, MARKDOWN_NAME, JSON_NAME = "report.html", "report.md", "report.json"

__all__ = ["SCHEMA_VERSION", "ReportError", "ReportFiles", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    json: Path


def write_report(verdict: dict[str, Any], out_dir: str | Path, *, run_detail: Any = None,
                 now: datetime | None = None) -> ReportFiles:
    """Write the three report files into ``out_dir`` (created if needed) and return their paths.

    ``run_detail`` is the store's record of the run (``Store.get_run(id)``, or its ``to_dict()``);
    when given, the rebuild section also shows the run's status, times and artifacts. ``now``
    fixes the "written on" time (tests, reproducible builds).
    """
    validate_verdict(verdict)
    folder = _prepare_folder(Path(out_dir))  # before the rendering, so a bad --out fails at once
    detail = run_detail.to_dict() if hasattr(run_detail, "to_dict") else run_detail
    written_at = now or datetime.now(UTC)
    version = _version()
    view = build_view(verdict, run_detail=detail, version=version, now=written_at)
    order = [row.name for row in view.arms]  # the charts list arms as the table does
    charts = render_charts(verdict, view.colours, quality_scale(verdict), goals(verdict), order)

    html = render_html(view, charts)
    markdown = render_markdown(view)
    document = dict(verdict)
    document["report"] = {
        "written_at": written_at.isoformat(timespec="seconds"),
        "tunewise_version": version,
        "files": {"html": HTML_NAME, "markdown": MARKDOWN_NAME, "json": JSON_NAME},
        "charts": {key: ({"drawn": True, "title": chart.title, "left_out": chart.left_out} if chart else
                         {"drawn": False}) for key, chart in charts.items()},
        "run": _run_record(detail),
    }
    files = ReportFiles(html=folder / HTML_NAME, markdown=folder / MARKDOWN_NAME, json=folder / JSON_NAME)
    _write(files.html, html)
    _write(files.markdown, markdown)
    _write(files.json, json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return files


def _run_record(detail: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the store adds to the verdict: when the run ran and what it left behind."""
    if not detail:
        return None
    keep = ("id", "status", "created_at", "finished_at", "models", "error")
    record = {key: detail.get(key) for key in keep if key in detail}
    record["artifacts"] = [{k: a.get(k) for k in ("kind", "name", "path", "sha256")}
                           for a in detail.get("artifacts") or []]
    return record


def _prepare_folder(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(f"cannot create the report folder: {error.strerror or error}", where=str(folder),
                          fix="choose another folder with --out") from None
    if not os.access(folder, os.W_OK):
        raise ReportError("the report folder is not writable", where=str(folder),
                          fix="choose another folder with --out") from None
    return folder


def _write(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so a reader never sees half a report."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ReportError(f"cannot write the report: {error.strerror or error}", where=str(path),
                          fix="choose another folder with --out") from None


def _version() -> str:
    try:
        return metadata.version("tunewise")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"
