"""How the CLI shows results on a terminal (rich). Library code never prints; it returns data
that these functions render."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from tunewise.store import RunDetail, RunSummary
    from tunewise.task.findings import CheckReport

# Piped or logged output (CI, `| tee`) gets a wide fixed width: rich's default of 80 columns
# would squeeze the bake-off table into unreadable slivers.
console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)

STATUS_MARK = {"met": ("✓ met", "green"), "not_met": ("✗ not met", "red"), "unknown": ("? unknown", "yellow")}


def print_check_report(report: CheckReport, *, show: int = 20, run_id: int | None = None) -> None:
    card = report.card
    console.print(f"[bold]{card.name}[/]  ({card.kind.value}, metric {card.metric_name})  "
                  f"checked in {report.elapsed_s:.1f} s")
    for role, path in report.files.items():
        console.print(f"  {role:<10} {path}")
    sizes = ", ".join(f"{split} {n:,}" for split, n in report.sizes.items())
    console.print(f"  examples   {sizes}")
    if report.labels is not None:
        console.print(f"  labels     {len(report.labels)}: {_preview(report.labels, 12)}")

    if report.row_errors:
        _print_row_errors(report, show)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    if report.findings:
        _print_findings(report)
    elif report.ok:
        console.print("\n[green]No data-quality findings.[/]")
    _print_readiness(report)

    if report.ok:
        stored = f" (recorded as run {run_id}: `tunewise runs show {run_id}`)" if run_id else ""
        console.print(f"\n[green]Data OK[/]: {sum(report.sizes.values()):,} examples load{stored}.")
    else:
        source = card.source or "task.yaml"
        console.print(
            f"\n[red]Data NOT loadable[/]: {len(report.row_errors):,} bad rows. Fix them, then run "
            f"`tunewise check {source}` again (`--json` lists every one)."
        )


def _print_row_errors(report: CheckReport, show: int) -> None:
    counts = ", ".join(f"{reason} {n:,}" for reason, n in report.error_counts().items())
    console.print(f"\n[bold red]{len(report.row_errors):,} bad rows[/] ({counts})")
    for error in report.row_errors[:show]:
        console.print(Text(f"  {error.file}:{error.line}  {error.reason}  {error.message}"), overflow="ellipsis")
    if len(report.row_errors) > show:
        console.print(f"  ... and {len(report.row_errors) - show:,} more (all of them: --json)")


def _print_findings(report: CheckReport) -> None:
    console.print("\n[bold]Data quality[/] (does not stop the run)")
    for finding in report.findings:
        colour = "yellow" if finding.severity == "warning" else "cyan"
        _print_indented(finding.summary, indent=4, lead=Text("  ● ", style=colour))
        for example in finding.examples[:2]:
            console.print(Text("      " + _example_line(example)), overflow="ellipsis", no_wrap=True)


def _print_readiness(report: CheckReport) -> None:
    console.print("\n[bold]Readiness for fine-tuning[/]")
    for item in report.readiness:
        mark, colour = STATUS_MARK[item.status]
        console.print(Text.assemble((f"  {mark:<10} ", colour), (item.title, "bold")))
        _print_indented(item.evidence, indent=13)
        if item.fix and item.status != "met" and item.fix not in item.evidence:
            _print_indented(f"fix: {item.fix}", indent=13, style="dim")


def _print_indented(text: str, *, indent: int, style: str = "", lead: Text | str = "") -> None:
    """Text wrapped with a hanging indent, so long evidence stays readable at any width."""
    grid = Table.grid()
    grid.add_column(width=indent)
    grid.add_column()
    grid.add_row(lead, Text(text, style=style))
    console.print(grid)


def _example_line(example: dict[str, Any]) -> str:
    """`train.jsonl:7425  'what is ...'` plus any other fields the finding gave."""
    example = dict(example)
    place = ""
    if "file" in example:
        place = f"{Path(str(example.pop('file'))).name}:{example.pop('line', '?')}  "
    parts = []
    for key, value in example.items():
        if isinstance(value, dict) and "file" in value:  # the other row of a pair
            parts.append("~ " + _example_line(value))
            continue
        if isinstance(value, str):
            value = repr(value if len(value) <= 70 else value[:67] + "...")
        parts.append(str(value) if key == "text" else f"{key}={value}")
    return place + "  ".join(parts)


def _preview(items: list[str], n: int) -> str:
    head = ", ".join(items[:n])
    return head + (f", ... (+{len(items) - n})" if len(items) > n else "")


# -- the run store ------------------------------------------------------------------------


def print_runs(rows: list[RunSummary]) -> None:
    if not rows:
        console.print("No runs yet. `tunewise check TASK` records one.")
        return
    table = Table(show_lines=False)
    for column in ("id", "task", "kind", "status", "created", "summary"):
        table.add_column(column, no_wrap=column != "summary")
    for row in rows:
        table.add_row(str(row.id), row.task_name, row.kind, row.status,
                      row.created_at.strftime("%Y-%m-%d %H:%M"), _summary_line(row.summary))
    console.print(table)


def print_run(detail: RunDetail) -> None:
    run = detail.to_dict()
    console.print(f"[bold]run {run['id']}[/]  {run['kind']}  {run['status']}  task {run['task_name']}")
    for key in ("created_at", "finished_at", "error"):
        if run.get(key):
            console.print(f"  {key:<12} {run[key]}")
    if run.get("summary"):
        console.print(f"  summary      {_summary_line(run['summary'])}")
    for key in ("data_hashes", "seeds", "models", "package_versions"):
        if run.get(key):
            console.print(f"  [bold]{key}[/]")
            _print_mapping(run[key], indent=4)
    if run.get("arms"):
        from tunewise.bakeoff.results import ArmResult

        arms = [ArmResult.from_metrics(arm["name"], arm.get("metrics"), arm["status"]) for arm in run["arms"]]
        metric = next((arm.estimate.metric for arm in arms if arm.estimate and arm.estimate.metric), "quality")
        _print_arm_table(arms, metric, "arms")
    for artifact in run.get("artifacts") or []:
        where = artifact["path"] or "(stored inline: `tunewise runs show ID --json`)"
        console.print(f"  artifact     {artifact['kind']}  {artifact['name']}  {where}")


def _print_mapping(mapping: dict[str, Any], *, indent: int) -> None:
    for name, value in mapping.items():
        if isinstance(value, dict):
            console.print(" " * indent + f"{name}")
            _print_mapping(value, indent=indent + 2)
        else:
            console.print(" " * indent + f"{name:<24} {value}")


def _summary_line(summary: dict[str, Any] | None) -> str:
    """`examples: train 1197, test 148; findings: duplicate_input 11` from a run's summary."""
    if not summary:
        return ""
    parts = []
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


# -- the bake-off ---------------------------------------------------------------------------


class RichObserver:
    """Progress bars for a running bake-off (one per arm), as a bake-off `Observer`."""

    def __init__(self, *, quiet: bool = False):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = quiet
        self.progress = Progress(TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=Console(stderr=True), disable=quiet)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> RichObserver:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def run_started(self, run_id: int, resumed: bool, n_examples: int) -> None:
        verb = "resuming" if resumed else "started"
        self.progress.console.print(f"bake-off run {run_id} {verb}: {n_examples:,} test examples")

    def arm_started(self, name: str, total: int, already: int) -> None:
        self.tasks[name] = self.progress.add_task(name, total=total, completed=already)

    def arm_progress(self, name: str, done: int) -> None:
        self.progress.update(self.tasks[name], completed=done)

    def arm_finished(self, result: Any) -> None:
        if result.status == "skipped":
            self.progress.console.print(f"[yellow]skipped[/] {result.name}: {result.reason}")


def print_bakeoff(result: Any) -> None:
    """The one table: quality with its 95% interval, latency, tokens and cost, per arm."""
    title = (f"{result.task}: {result.n_examples:,} test examples, run {result.run_id}"
             f"{' (resumed)' if result.resumed else ''}")
    _print_arm_table(result.arms, result.metric, title)
    console.print(f"  {result.elapsed_s:.0f} s in all. `tunewise runs show {result.run_id}` has every detail; "
                  "re-running the same command reuses cached answers.")


def _print_arm_table(arms: list[Any], metric: str, title: str) -> None:
    """Arms (``ArmResult``) as one table, then a line per arm for what the table cannot hold."""
    secondary = sorted({key for arm in arms for key in arm.secondary})
    table = Table(title=title, title_justify="left")
    table.add_column("arm", no_wrap=True)
    table.add_column(f"{metric} [95% CI]", no_wrap=True)
    for key in secondary:
        table.add_column(key, justify="right")
    for column in ("p50 ms", "p95 ms", "tok in", "tok out", "$ / 1k req", "cached"):
        table.add_column(column, justify="right")
    notes = []
    for arm in arms:
        if arm.estimate is None:
            table.add_row(arm.name, f"[dim]{arm.status}[/]", *[""] * (len(secondary) + 6))
            if arm.reason:
                notes.append(f"{arm.name}: {arm.reason}")
            continue
        est = arm.estimate
        partial = " [yellow](partial)[/]" if arm.status == "partial" else ""
        table.add_row(
            arm.name,
            f"{est.value:.3f} [{est.low:.3f}, {est.high:.3f}]{partial}",
            *[f"{arm.secondary[k]:.3f}" if k in arm.secondary else "" for k in secondary],
            *(_number(value, spec) for value, spec in (
                (arm.latency_p50_ms, ",.0f"), (arm.latency_p95_ms, ",.0f"), (arm.tokens_in_mean, ",.0f"),
                (arm.tokens_out_mean, ",.0f"), (arm.cost_per_1k_usd, ".4f"), (arm.cached_share, ".0%"))),
        )
        if arm.reason:
            notes.append(f"{arm.name}: {arm.reason}")
        if arm.prepare_s and arm.prepare_s >= 1:  # a sub-second prepare is noise here
            notes.append(f"{arm.name}: prepared in {arm.prepare_s:.1f} s (${arm.prepare_cost_usd or 0:.4f}, one-time)")
    console.print(table)
    for note in notes:
        console.print(f"  {note}")


def _number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def print_models(entries: list[Any]) -> None:
    table = Table()
    for column in ("name", "kind", "params", "installed", "cached", "size", "description"):
        table.add_column(column, no_wrap=column != "description")
    for e in entries:
        table.add_row(e.name, e.kind, f"{e.params / 1e6:,.0f} M", "yes" if e.installed else "no",
                      "yes" if e.cached else "no", f"{e.size_bytes / 2**20:,.0f} MiB", e.description)
    console.print(table)
    console.print("  `tunewise models pull NAME` installs and converts one; any local model folder, hub id or "
                  "openai:MODEL\\[@BASE_URL] also works as --models.")
