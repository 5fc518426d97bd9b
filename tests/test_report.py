"""The report writer: HTML, Markdown and JSON from a verdict, and the `tunewise report` command.

Rendering is checked by parsing what was written (html.parser, json, Markdown table structure),
not by searching for template fragments: escaping, self-containment and the shape of every
table are properties of the output. The browser side (does Chromium render it, offline, with
charts and a sane layout) is tests/test_report_browser.py.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_samples import HOSTILE_INPUT, LONG_INPUT, minimal_verdict, sample_verdict

from tunewise.cli import cli
from tunewise.verdict.report import ReportError, ReportFiles, write_report
from tunewise.verdict.report import formatting as fmt
from tunewise.verdict.report.svg_inline import inline_svg

NOW = datetime(2026, 11, 4, 9, 30, tzinfo=UTC)


_INLINE = {"a", "b", "code", "em", "span", "strong", "wbr"}  # no word break around these


class _Page(HTMLParser):
    """What a browser would build: every tag with its attributes, and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("style", "title", "desc"):
            self._skip += 1
        if tag not in _INLINE:
            self.text.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title", "desc") and self._skip:
            self._skip -= 1
        if tag not in _INLINE:
            self.text.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)

    def names(self) -> set[str]:
        return {tag for tag, _ in self.tags}

    def visible_text(self) -> str:
        return " ".join("".join(self.text).split())


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    return write_report(sample_verdict(), tmp_path_factory.mktemp("report"), now=NOW)


# -- the HTML --------------------------------------------------------------------------------


def test_writes_three_files_side_by_side(sample_report: ReportFiles):
    assert [p.name for p in (sample_report.html, sample_report.markdown, sample_report.json)] == [
        "report.html", "report.md", "report.json"]
    assert len({p.parent for p in (sample_report.html, sample_report.markdown, sample_report.json)}) == 1
    assert all(p.stat().st_size > 1000 for p in (sample_report.html, sample_report.markdown, sample_report.json))
    # No temporary file is left behind by the write-then-rename.
    assert sorted(p.name for p in sample_report.html.parent.iterdir()) == ["report.html", "report.json", "report.md"]


def test_the_verdict_comes_first_in_plain_words(sample_report: ReportFiles):
    verdict = sample_verdict()
    text = _parse(sample_report.html).visible_text()
    recommendation = verdict["recommendation"]
    headline_at = text.index(recommendation["headline"])
    assert headline_at < text.index("Arms compared") < text.index("Rebuild this run")
    for line in recommendation["reasons"] + recommendation["flips"] + recommendation["caveats"]:
        assert line in text
    assert "Too close to call: " + recommendation["ties"][0] in text
    assert "Prompt a model" in text[:headline_at]  # the choice, as words, above the headline


def test_every_arm_is_in_the_table_and_skipped_arms_say_why(sample_report: ReportFiles):
    text = _parse(sample_report.html).visible_text()
    for arm in sample_verdict()["arms"]:
        assert arm["name"] in text
        if arm["status"] == "skipped":
            assert f"{arm['name']}: {arm['reason']}" in text
    # Best first: LoRA (93.0%) is listed before gpt-4o-mini (90.5%) and the 41.0% arm last.
    table = text[text.index("Arms compared"):text.index("Not run")]
    assert table.index("93.0%") < table.index("90.5%") < table.index("84.5%") < table.index("62.0%") < table.index(
        "41.0%")
    assert "+31.0 pp" in text and "+24.5 to +37.5" in text and "baseline" in text


def test_numbers_sit_in_right_aligned_cells(sample_report: ReportFiles):
    page = _parse(sample_report.html)
    cells = [attrs.get("class") or "" for tag, attrs in page.tags if tag == "td"]
    assert sum("num" in c.split() for c in cells) > 40


def test_user_text_is_escaped_never_markup(sample_report: ReportFiles):
    page = _parse(sample_report.html)
    # The hostile input holds <script> and <b>: neither may become an element.
    assert "script" not in page.names()
    assert "b" not in page.names()
    assert HOSTILE_INPUT in page.visible_text()
    raw = sample_report.html.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in raw
    # A long input is cut at a word boundary with the rest folded away, not lost.
    text = page.visible_text()
    assert LONG_INPUT[:200] in text and "show the rest" in text


def test_the_page_is_self_contained(sample_report: ReportFiles):
    page = _parse(sample_report.html)
    raw = sample_report.html.read_text(encoding="utf-8")
    assert "link" not in page.names() and "script" not in page.names() and "img" not in page.names()
    assert not [attrs for _, attrs in page.tags if "src" in attrs]
    # The only URLs are XML namespace names, which are identifiers, never fetched.
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", raw))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    csp = [attrs for tag, attrs in page.tags if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in (csp[0]["content"] or "")


def test_charts_are_inline_svg_with_unique_ids(sample_report: ReportFiles):
    page = _parse(sample_report.html)
    charts = [attrs for tag, attrs in page.tags if tag == "svg"]
    assert len(charts) == 5  # quality-cost, latency, learning curve, TCO, volume
    assert all(attrs.get("role") == "img" and "viewBox" not in attrs and attrs.get("viewbox") for attrs in charts)
    ids = [attrs["id"] for _, attrs in page.tags if attrs.get("id")]
    assert len(ids) == len(set(ids)), "duplicate ids: inlined SVGs would share glyphs and clip paths"
    # Every in-page reference points at an id that exists (a broken one blanks glyphs).
    raw = sample_report.html.read_text(encoding="utf-8")
    references = set(re.findall(r'href="#([^"]+)"', raw)) | set(re.findall(r"url\(#([^)]+)\)", raw))
    assert references and references <= set(ids)
    paths = sum(1 for tag, _ in page.tags if tag in ("path", "use"))
    assert paths > 200  # axes, marks and text-as-glyphs: drawn, not empty


def test_the_same_verdict_gives_the_same_bytes(tmp_path: Path):
    first = write_report(sample_verdict(), tmp_path / "a", now=NOW)
    second = write_report(sample_verdict(), tmp_path / "b", now=NOW)
    for a, b in ((first.html, second.html), (first.markdown, second.markdown), (first.json, second.json)):
        assert a.read_bytes() == b.read_bytes()


def test_rebuild_section_and_run_record(tmp_path: Path):
    verdict = sample_verdict()
    run_detail = {"id": 42, "status": "finished", "created_at": "2026-11-03T14:00:00+00:00",
                  "finished_at": "2026-11-03T14:05:00+00:00", "models": {}, "card": {"name": "x"},
                  "artifacts": [{"kind": "adapter", "name": "lora", "path": "/runs/42/adapter", "sha256": "ab"}]}
    files = write_report(verdict, tmp_path, run_detail=run_detail, now=NOW)
    text = _parse(files.html).visible_text()
    assert verdict["rebuild"]["command"] in text
    assert verdict["rebuild"]["data_hashes"]["file"] in text
    assert "quality_bar: 0.9" in text  # the card, as YAML
    assert "transformers 5.23.0" in text and "Artifact: adapter /runs/42/adapter" in text
    record = json.loads(files.json.read_text())["report"]["run"]
    assert record["status"] == "finished" and record["artifacts"][0]["path"] == "/runs/42/adapter"


# -- Markdown and JSON -----------------------------------------------------------------------


def _tables(markdown: str) -> list[list[str]]:
    blocks, current = [], []
    for line in markdown.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    return blocks + ([current] if current else [])


def _cells(row: str) -> int:
    """Columns in a Markdown table row: pipes not escaped with a backslash."""
    return len(re.findall(r"(?<!\\)\|", row)) - 1


def test_markdown_has_the_same_content(sample_report: ReportFiles):
    markdown = sample_report.markdown.read_text(encoding="utf-8")
    verdict = sample_verdict()
    assert markdown.startswith("# support-ticket-routing: tunewise report, run #42")
    assert "## Verdict: Prompt a model" in markdown
    for heading in ("Arms compared", "Learning curve", "Total cost of ownership", "Where each arm fails",
                    "Data and readiness", "Rebuild this run"):
        assert f"\n## {heading}\n" in markdown
    assert "Prompt gpt-4o-mini zero-shot" in markdown
    assert verdict["rebuild"]["command"] in markdown
    assert "charts are in report.html" in markdown  # what stands in for the charts is said


def test_markdown_tables_keep_their_shape_with_hostile_text(sample_report: ReportFiles):
    markdown = sample_report.markdown.read_text(encoding="utf-8")
    tables = _tables(markdown)
    assert len(tables) >= 8
    for table in tables:
        widths = {_cells(row) for row in table}
        assert len(widths) == 1, f"ragged table: {table[:3]}"
        assert re.fullmatch(r"\|(:?-{3}:?\|)+", table[1]), table[1]
    # The input's pipe, markup and dollar signs are escaped, not interpreted; plain words stay plain.
    assert r"\<script>alert" in markdown and r"Refund & cancel \| both?" in markdown
    assert r"Charged \$49 then \$49" in markdown and r"\`code\` \*stars\*" in markdown
    assert not re.search(r"(?<!\\)<(script|b)\b", markdown)
    assert "`embed_classifier`" in markdown and "p < 0.001" in markdown


@pytest.mark.parametrize(("text", "markdown"), [
    ("embed_classifier", "embed_classifier"),
    ("_starts and ends_", r"\_starts and ends\_"),
    ("p < 0.001, a<b, <b>x</b>", r"p < 0.001, a\<b, \<b>x\</b>"),
    ("R&D &amp; &#35;", r"R&D &amp;amp; &amp;#35;"),
    ("# not a heading", r"\# not a heading"),
    ("two\nlines | pipe $5 *x*", r"two lines \| pipe \$5 \*x\*"),
])
def test_markdown_escaping_acts_only_where_needed(text: str, markdown: str):
    from tunewise.verdict.report.markdown import md_text

    assert md_text(text) == markdown


def test_json_is_the_verdict_plus_what_the_report_adds(sample_report: ReportFiles):
    document = json.loads(sample_report.json.read_text(encoding="utf-8"))
    report = document.pop("report")
    assert document == sample_verdict()
    assert report["written_at"] == "2026-11-04T09:30:00+00:00"
    assert report["files"] == {"html": "report.html", "markdown": "report.md", "json": "report.json"}
    assert {key for key, chart in report["charts"].items() if chart["drawn"]} == {
        "quality_cost", "latency", "learning_curve", "tco", "volume"}


# -- optional sections and edge cases ---------------------------------------------------------


def test_missing_optional_sections_are_said_not_hidden(tmp_path: Path):
    files = write_report(minimal_verdict(), tmp_path, now=NOW)
    text = _parse(files.html).visible_text()
    assert "No learning curve in this run" in text
    assert "No cost of ownership in this verdict" in text
    assert "No data check was recorded with this run" in text
    assert "No readiness checklist in this verdict" in text
    charts = json.loads(files.json.read_text())["report"]["charts"]
    assert {key for key, chart in charts.items() if chart["drawn"]} == {"quality_cost", "latency"}
    markdown = files.markdown.read_text()
    assert "No learning curve in this run" in markdown and "No cost of ownership" in markdown


def test_one_arm_only(tmp_path: Path):
    verdict = minimal_verdict()
    verdict["arms"] = [arm for arm in verdict["arms"] if arm["name"] == "embed_classifier"]
    verdict["recommendation"].update(choice="no_llm", arm="embed_classifier", ties=[], flips=[])
    files = write_report(verdict, tmp_path, now=NOW)
    text = _parse(files.html).visible_text()
    assert "No LLM needed" in text and "1 arm scored" in text
    assert len([t for t, _ in _parse(files.html).tags if t == "svg"]) == 2


def test_every_arm_skipped(tmp_path: Path):
    arms = [arm for arm in sample_verdict()["arms"] if arm["status"] == "skipped"]
    verdict = minimal_verdict(arms=arms)
    verdict["recommendation"].update(choice="undecided", arm=None, headline="No arm ran, so there is nothing to "
                                     "recommend yet.", reasons=[], flips=[], ties=[])
    files = write_report(verdict, tmp_path, now=NOW)
    text = _parse(files.html).visible_text()
    assert "No clear winner yet" in text and "No arm produced a score in this run" in text
    assert "No arm has both a score and a measured cost" in text
    assert "few_shot_random@gemma3-270m: does not fit the 20 min budget" in text
    assert "svg" not in _parse(files.html).names()


def test_arms_that_cannot_be_placed_are_named(tmp_path: Path):
    verdict = sample_verdict()
    verdict["arms"][0]["cost_per_1k_usd"] = None  # embed_classifier: no cost measured
    verdict["arms"][1]["cost_per_1k_usd"] = 0.0  # free: still placed, labelled $0
    files = write_report(verdict, tmp_path, now=NOW)
    assert "Not plotted: embed_classifier (no cost measured)." in _parse(files.html).visible_text()
    charts = json.loads(files.json.read_text())["report"]["charts"]
    assert charts["quality_cost"]["left_out"] == ["embed_classifier (no cost measured)"]


def test_a_metric_outside_zero_one_prints_as_numbers(tmp_path: Path):
    verdict = minimal_verdict()
    verdict["metric"] = "pkg.mod:bleu"
    for arm in verdict["arms"]:
        if arm["quality"]:
            arm["quality"] = {key: value * 40 for key, value in arm["quality"].items()}
    files = write_report(verdict, tmp_path, now=NOW)
    text = _parse(files.html).visible_text()
    assert "37.2" in text and "37.2%" not in text  # 0.93 x 40


# -- contract and output errors -----------------------------------------------------------------


@pytest.mark.parametrize(("edit", "where", "message"), [
    (lambda v: v.pop("rebuild"), "verdict", "'rebuild' is a required property"),
    (lambda v: v["arms"][2].pop("quality"), "verdict.arms[2]", "'quality' is a required property"),
    (lambda v: v["recommendation"].pop("headline"), "verdict.recommendation", "'headline'"),
    (lambda v: v["tco"]["arms"]["embed_classifier"].pop("cumulative_usd"), "verdict.tco.arms.embed_classifier",
     "'cumulative_usd'"),
    (lambda v: v["arms"][0]["quality"].pop("low"), "verdict.arms[0].quality", "'low'"),
    (lambda v: v.update(schema_version=2), "verdict.schema_version", "this report reads version 1"),
    (lambda v: v["recommendation"].update(choice="yolo"), "verdict.recommendation.choice", "'yolo'"),
    (lambda v: v["arms"][1]["vs_best_prompt"].update(p_holm=float("nan")), "verdict.arms[1].vs_best_prompt.p_holm",
     "use null for an unknown value"),
])
def test_a_broken_contract_names_the_key_and_writes_nothing(tmp_path: Path, edit, where: str, message: str):
    verdict = sample_verdict()
    edit(verdict)
    with pytest.raises(ReportError) as raised:
        write_report(verdict, tmp_path / "out")
    assert raised.value.where == where
    assert message in raised.value.message
    assert "verdict producer" in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_not_a_dict_is_refused(tmp_path: Path):
    with pytest.raises(ReportError, match="must be a dict"):
        write_report([sample_verdict()], tmp_path)  # type: ignore[arg-type]


def test_an_output_folder_inside_a_file_is_an_error_with_the_fix(tmp_path: Path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    for out in (blocker, blocker / "report"):
        with pytest.raises(ReportError) as raised:
            write_report(sample_verdict(), out)
        assert raised.value.where == str(out)
        assert "--out" in (raised.value.fix or "")


# -- pieces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [
    (0, "$0"), (0.0031, "$0.0031"), (0.42, "$0.42"), (0.09, "$0.090"), (38.2, "$38.20"), (734.8, "$735"),
    (12_400, "$12,400"), (None, "—"), (float("nan"), "—"), (-5, "-$5.00"),
])
def test_dollars(value, text):
    assert fmt.usd(value) == text


@pytest.mark.parametrize(("value", "text"), [(0.8, "0.8 ms"), (42, "42 ms"), (1300, "1.3 s"), (12_000, "12 s")])
def test_milliseconds(value, text):
    assert fmt.milliseconds(value) == text


def test_axis_ticks_and_volumes():
    assert [fmt.usd_tick(v) for v in (0.001, 0.01, 0.1, 500, 2500, 2e6)] == [
        "$0.001", "$0.01", "$0.1", "$500", "$2.5k", "$2M"]
    assert [fmt.count(v) for v in (850, 60_000, 2_100_000)] == ["850", "60,000", "2.1 M"]
    assert fmt.seconds(1830) == "30 min 30 s" and fmt.seconds(7500) == "2 h 5 min"


def test_inline_svg_prefixes_ids_and_references():
    document = ('<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg width="10pt" height="5pt" viewBox="0 0 10 5" '
                'xmlns="http://www.w3.org/2000/svg"><metadata>m</metadata><!-- a -- comment -->'
                '<defs><path id="g1" d="M0 0"/><clipPath id="c1"><rect/></clipPath></defs>'
                '<use xlink:href="#g1" fill="#0072b2"/><g clip-path="url(#c1)"/></svg>')
    svg = str(inline_svg(document, "chart-x", title="A <title>", description="d & e"))
    assert svg.startswith("<svg") and "<!--" not in svg and "metadata" not in svg and 'width="10pt"' not in svg
    assert 'id="chart-x-g1"' in svg and 'xlink:href="#chart-x-g1"' in svg and "url(#chart-x-c1)" in svg
    assert 'fill="#0072b2"' in svg  # colours are not references
    assert "A &lt;title&gt;" in svg and "d &amp; e" in svg
    with pytest.raises(ValueError, match="viewBox"):
        inline_svg("<svg></svg>", "p", title="t", description="d")


# -- the command --------------------------------------------------------------------------------


def test_report_command_writes_the_files_from_a_stored_run(tmp_path: Path):
    from verdict_fixtures import FixtureArm, make_run

    from tunewise.store import open_store

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with open_store(url) as store:
        run_id = make_run(store, tmp_path, [
            FixtureArm("embed_classifier", accuracy=0.78, latency_ms=4),
            FixtureArm("zero_shot@smollm2-135m-instruct", accuracy=0.62, latency_ms=350, seed=1),
            FixtureArm("zero_shot@openai:gpt-4o-mini", accuracy=0.93, tokens_in=400, latency_ms=700, seed=2),
        ], quality_bar=0.9)
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["--store", url, "report", str(run_id), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines == [f"html      {out / 'report.html'}", f"markdown  {out / 'report.md'}",
                     f"json      {out / 'report.json'}"]
    document = json.loads((out / "report.json").read_text())
    assert document["run_id"] == run_id
    assert {arm["name"] for arm in document["arms"]} >= {"embed_classifier", "zero_shot@openai:gpt-4o-mini"}
    text = _parse(out / "report.html").visible_text()
    assert document["recommendation"]["headline"] in text
    assert document["report"]["run"]["id"] == run_id


def test_report_command_on_an_unknown_run(tmp_path: Path):
    result = CliRunner().invoke(cli, ["--store", f"sqlite:///{tmp_path / 'runs.db'}", "report", "999"])
    assert result.exit_code == 2
    assert "no run 999" in result.output and "tunewise runs list" in result.output


def test_report_command_on_a_check_run_says_why(tmp_path: Path):
    from tunewise.store import open_store
    from tunewise.task import check_task, load_card

    card = load_card(Path(__file__).resolve().parents[1] / "examples" / "support-tickets" / "task.yaml")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with open_store(url) as store:
        run_id = store.record_check(card, check_task(card))
    result = CliRunner().invoke(cli, ["--store", url, "report", str(run_id), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_report_command_with_an_unwritable_out(tmp_path: Path):
    from verdict_fixtures import FixtureArm, make_run

    from tunewise.store import open_store

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with open_store(url) as store:
        run_id = make_run(store, tmp_path, [FixtureArm("embed_classifier", accuracy=0.8)])
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = CliRunner().invoke(cli, ["--store", url, "report", str(run_id), "--out", str(blocker / "report")])
    assert result.exit_code == 2
    assert f"{blocker / 'report'}: cannot create the report folder" in result.output
    assert "choose another folder with --out" in result.output


def test_report_open_opens_the_html_in_a_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from verdict_fixtures import FixtureArm, make_run

    from tunewise.store import open_store

    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *args, **kwargs: opened.append(url) or True)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with open_store(url) as store:
        run_id = make_run(store, tmp_path, [FixtureArm("embed_classifier", accuracy=0.8)])
    result = CliRunner().invoke(cli, ["--store", url, "report", str(run_id), "--out", str(tmp_path / "r"), "--open"])
    assert result.exit_code == 0, result.output
    assert opened == [(tmp_path / "r" / "report.html").resolve().as_uri()]
