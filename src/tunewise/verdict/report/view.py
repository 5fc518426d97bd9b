"""The verdict, arranged and formatted for reading: what the HTML and Markdown templates show.

Both templates render this one view, so the two files say the same things with the same
numbers; only the charts are HTML-only (the Markdown shows their data as tables). Nothing here
decides anything: order, grouping and formatting only. The verdict has already been checked
against the contract, so required keys are read directly and a producer bug fails loudly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from tunewise.verdict.report import formatting as fmt
from tunewise.verdict.report.palette import arm_colours

ERROR_INPUT_CHARS = 240  # longer inputs show their start, with the full text one click away
ERRORS_PER_ARM = 5

CHOICE_LABELS = {
    "prompt": "Prompt a model",
    "rag": "Add retrieval (RAG)",
    "fine_tune": "Fine-tune",
    "rag_fine_tune": "RAG + fine-tune",
    "distill": "Distill",
    "cascade": "Cascade",
    "no_llm": "No LLM needed",
    "collect_more_data": "Collect more data first",
    "undecided": "No clear winner yet",
}

STATUS_MARKS = {"met": ("✓", "met"), "not_met": ("✗", "not met"), "unknown": ("?", "unknown")}

SENSITIVITY = {  # key in tco.sensitivity -> (section title, what its rows vary)
    "volume": ("Traffic volume", "requests a month"),
    "cadence": ("Re-training cadence", "retrain every"),
    "api_price_drop": ("Falling API prices", "API prices fall by"),
}


@dataclass
class ArmRow:
    name: str
    kind: str
    model: str
    colour: str
    status: str
    reason: str
    scored: bool  # has a quality estimate
    recommended: bool
    quality: str
    interval: str
    n: str
    delta: str  # versus the best prompting arm
    delta_interval: str
    p_holm: str
    significant: bool | None
    is_baseline: bool
    p50: str
    p95: str
    cost: str
    prepare_time: str
    prepare_cost: str
    meets_bar: str
    pareto: bool


@dataclass
class ErrorItem:
    input: str  # the input, or its first ERROR_INPUT_CHARS characters
    rest: str | None  # the remainder of a long input (folded away in the HTML)
    expected: str
    output: str
    also_missed_by: list[str]


@dataclass
class ErrorColumn:
    arm: str
    colour: str
    items: list[ErrorItem]
    more: int  # errors listed by the verdict but not shown


@dataclass
class TcoArm:
    name: str
    colour: str
    recommended: bool
    cheapest: bool


@dataclass
class TcoGroup:
    """One block of the cost table: its items (one row each, one cell per arm) and their sum."""

    title: str
    items: list[tuple[str, list[str]]]
    sum: list[str]


@dataclass
class Table:
    title: str
    note: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class SensitivityGroup:
    title: str
    varied: str  # what the rows vary, e.g. "requests a month"
    rows: list[list[str]]  # the varied value, then one total per arm
    cheapest: list[int]  # per row, the column of the cheapest arm (0 when none)
    current: list[bool]  # per row, whether it is the verdict's own assumption


@dataclass
class TcoView:
    horizon: str
    volume: str
    retrain: str
    assumptions: list[tuple[str, str]]
    assumption_tables: list[Table]  # nested assumptions, e.g. engineering hours per arm kind
    notes: list[str]
    arms: list[TcoArm]  # cheapest first: the table's columns
    groups: list[TcoGroup]  # one-time, then every month
    totals: list[str]  # over the horizon, one per arm
    cumulative: Table
    break_even: list[dict[str, str]]
    sensitivity_arms: list[str]
    sensitivity: list[SensitivityGroup]


@dataclass
class CurveView:
    arm: str
    text: str
    table: Table


@dataclass
class ReadinessRow:
    label: str
    status: str
    mark: str
    status_text: str
    detail: str
    fix: str  # what to do about an item that is not met


@dataclass
class FindingRow:
    severity: str
    code: str
    count: str
    summary: str
    examples: list[str]


@dataclass
class CheckView:
    sizes: list[tuple[str, str]]
    row_errors: list[tuple[str, str]]
    findings: list[FindingRow]
    notes: list[str]


@dataclass
class RebuildView:
    command: str
    card_yaml: str
    data_hashes: list[tuple[str, str]]
    seeds: list[tuple[str, str]]
    config: list[tuple[str, str]]
    versions: list[tuple[str, str]]
    extra: list[tuple[str, list[tuple[str, str]]]]  # other settings the producer recorded (machine, models)
    run: list[tuple[str, str]]  # from the store's run record, when given


@dataclass
class ReportView:
    title: str
    task: str
    run_id: int
    meta: list[tuple[str, str]]
    choice: str
    choice_label: str
    recommended_arm: str | None
    headline: str
    reasons: list[str]
    flips: list[str]
    ties: list[str]
    caveats: list[str]
    metric: str
    quality_bar: str | None
    latency_limit: str | None
    arms: list[ArmRow]
    scored_count: int
    skipped: list[ArmRow]
    errors: list[ErrorColumn]
    tco: TcoView | None
    curves: list[CurveView]
    readiness: list[ReadinessRow]
    check: CheckView | None
    rebuild: RebuildView
    generated_at: str
    version: str
    colours: dict[str, str]  # by arm name, shared with the charts


def colours_for(verdict: dict[str, Any]) -> dict[str, str]:
    """One colour per arm, in the verdict's order (TCO-only names last)."""
    return arm_colours([arm["name"] for arm in verdict["arms"]] + list((verdict["tco"] or {}).get("arms", {})))


def goals(verdict: dict[str, Any]) -> dict[str, float | None]:
    """The card's quality bar and latency limit, when it sets them (charts draw them as lines)."""
    card_goals = verdict["rebuild"]["card"].get("goals") or {}
    return {"quality_bar": _number_or_none(card_goals.get("quality_bar")),
            "latency_p95_ms": _number_or_none(card_goals.get("latency_p95_ms"))}


def quality_scale(verdict: dict[str, Any]) -> fmt.QualityScale:
    values: list[float] = []
    for arm in verdict["arms"]:
        if arm["quality"]:
            values += [arm["quality"]["value"], arm["quality"]["low"], arm["quality"]["high"]]
    for curve in verdict["learning_curve"]:
        values += [point["value"] for point in curve["points"]]
    return fmt.QualityScale(values)


def build_view(verdict: dict[str, Any], *, run_detail: dict[str, Any] | None = None,
               version: str = "", now: datetime | None = None) -> ReportView:
    scale = quality_scale(verdict)
    colours = colours_for(verdict)
    recommendation = verdict["recommendation"]
    arm_goals = goals(verdict)
    rows = [_arm_row(arm, scale, colours, recommendation["arm"]) for arm in verdict["arms"]]
    baselines = {arm["vs_best_prompt"]["baseline"] for arm in verdict["arms"] if arm["vs_best_prompt"]}
    for row in rows:
        row.is_baseline = row.name in baselines
    # The table reads best-first; skipped arms follow in their own list with the reason.
    scored = sorted((row for row in rows if row.scored), key=lambda row: -_quality_of(verdict, row.name))
    unscored = [row for row in rows if not row.scored]
    generated = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    return ReportView(
        title=f"{verdict['task']}: {CHOICE_LABELS[recommendation['choice']].lower()}",
        task=verdict["task"],
        run_id=verdict["run_id"],
        meta=[("Kind", verdict["kind"]), ("Metric", verdict["metric"]),
              ("Test examples", fmt.count(verdict["n_examples"])), ("Run", f"#{verdict['run_id']}"),
              ("Measured", fmt.timestamp(verdict["created_at"]))],
        choice=recommendation["choice"],
        choice_label=CHOICE_LABELS[recommendation["choice"]],
        recommended_arm=recommendation["arm"],
        headline=recommendation["headline"],
        reasons=list(recommendation["reasons"]),
        flips=list(recommendation["flips"]),
        ties=list(recommendation["ties"]),
        caveats=list(recommendation["caveats"]),
        metric=verdict["metric"],
        quality_bar=scale.value(arm_goals["quality_bar"]) if arm_goals["quality_bar"] is not None else None,
        latency_limit=(fmt.milliseconds(arm_goals["latency_p95_ms"])
                       if arm_goals["latency_p95_ms"] is not None else None),
        arms=scored + [row for row in unscored if row.status != "skipped"],
        scored_count=len(scored),
        skipped=[row for row in unscored if row.status == "skipped"],
        errors=_error_columns(verdict, colours),
        tco=(_tco_view(verdict["tco"], colours, recommendation["arm"], {arm["kind"] for arm in verdict["arms"]})
             if verdict["tco"] else None),
        curves=[_curve_view(curve, scale) for curve in verdict["learning_curve"] if curve["points"]],
        readiness=[_readiness_row(item) for item in verdict["readiness"]],
        check=_check_view(verdict["check"]) if verdict["check"] else None,
        rebuild=_rebuild_view(verdict["rebuild"], run_detail),
        generated_at=fmt.timestamp(generated),
        version=version,
        colours=colours,
    )


# -- arms ------------------------------------------------------------------------------------


def _arm_row(arm: dict[str, Any], scale: fmt.QualityScale, colours: dict[str, str], recommended: str | None) -> ArmRow:
    quality, versus = arm["quality"], arm["vs_best_prompt"]
    return ArmRow(
        name=arm["name"], kind=arm["kind"], model=arm["model"] or fmt.DASH, colour=colours[arm["name"]],
        status=arm["status"], reason=arm["reason"] or "", scored=quality is not None,
        recommended=arm["name"] == recommended,
        quality=scale.value(quality["value"]) if quality else fmt.DASH,
        interval=scale.interval(quality["low"], quality["high"]) if quality else "",
        n=fmt.count(arm["n"]),
        delta=scale.delta(versus["delta"]) if versus else fmt.DASH,
        delta_interval=scale.delta_interval(versus["low"], versus["high"]) if versus else "",
        p_holm=fmt.p_value(versus["p_holm"]) if versus else "",
        significant=versus["significant"] if versus else None,
        is_baseline=False,
        p50=fmt.milliseconds(arm["latency_p50_ms"]), p95=fmt.milliseconds(arm["latency_p95_ms"]),
        cost=fmt.usd(arm["cost_per_1k_usd"]),
        prepare_time=fmt.seconds(arm["prepare_s"]),
        prepare_cost=fmt.usd(arm["prepare_cost_usd"]) if arm["prepare_cost_usd"] else "",
        meets_bar={True: "yes", False: "no", None: fmt.DASH}[arm["meets_bar"]],
        pareto=arm["pareto"],
    )


def _quality_of(verdict: dict[str, Any], name: str) -> float:
    arm = next(arm for arm in verdict["arms"] if arm["name"] == name)
    return arm["quality"]["value"] if arm["quality"] else float("-inf")


def _error_columns(verdict: dict[str, Any], colours: dict[str, str]) -> list[ErrorColumn]:
    missed_by: dict[str, list[str]] = {}
    for arm in verdict["arms"]:
        for error in arm["errors"]:
            names = missed_by.setdefault(error["input"], [])
            if arm["name"] not in names:
                names.append(arm["name"])
    columns = []
    for arm in verdict["arms"]:
        if not arm["errors"]:
            continue
        items = []
        for error in arm["errors"][:ERRORS_PER_ARM]:
            text = error["input"]
            cut = _cut_point(text)
            items.append(ErrorItem(
                input=text[:cut], rest=text[cut:] or None, expected=error["expected"],
                output=error["output"],
                also_missed_by=[name for name in missed_by[text] if name != arm["name"]],
            ))
        columns.append(ErrorColumn(arm=arm["name"], colour=colours[arm["name"]], items=items,
                                   more=max(0, len(arm["errors"]) - ERRORS_PER_ARM)))
    return columns


def _cut_point(text: str) -> int:
    """Where a long input is folded: at the last space before the limit, so no word is split."""
    if len(text) <= ERROR_INPUT_CHARS + 60:  # folding away a line or less saves nothing
        return len(text)
    space = text.rfind(" ", ERROR_INPUT_CHARS // 2, ERROR_INPUT_CHARS)
    return space if space > 0 else ERROR_INPUT_CHARS


# -- total cost of ownership -----------------------------------------------------------------


def _tco_view(tco: dict[str, Any], colours: dict[str, str], recommended: str | None, kinds: set[str]) -> TcoView:
    arms = tco["arms"]
    names = sorted(arms, key=lambda name: arms[name]["total_usd"])
    columns = [TcoArm(name=name, colour=colours.get(name, "#888888"), recommended=name == recommended,
                      cheapest=index == 0) for index, name in enumerate(names)]
    groups = []
    for title, field_name in (("One-time", "one_time_usd"), ("Every month", "monthly_usd")):
        parts = _keys(arms[name][field_name] for name in names)
        groups.append(TcoGroup(
            title=title,
            items=[(_words(part), [fmt.usd(arms[name][field_name].get(part)) for name in names]) for part in parts],
            sum=[fmt.usd(sum(arms[name][field_name].values())) for name in names],
        ))
    retrain = tco["retrain_every_months"]
    sensitivity_arms = _keys(entry["totals"] for entries in tco["sensitivity"].values() for entry in entries)
    return TcoView(
        horizon=fmt.months(tco["horizon_months"]),
        volume=fmt.count(tco["requests_per_month"]),
        retrain=f"every {fmt.months(retrain)}" if retrain else "never",
        assumptions=[(_words(key), _assumption(value)) for key, value in tco["assumptions"].items()
                     if not isinstance(value, list) and _assumption_table(key, value, kinds) is None],
        assumption_tables=[table for key, value in tco["assumptions"].items() if isinstance(value, dict)
                           if (table := _assumption_table(key, value, kinds)) is not None],
        notes=[str(note) for note in tco["assumptions"].get("notes") or []],
        arms=columns,
        groups=groups,
        totals=[fmt.usd(arms[name]["total_usd"]) for name in names],
        cumulative=_cumulative_table(tco),
        break_even=[{"a": item["a"], "b": item["b"], "volume": fmt.count(item["requests_per_month"]),
                     "text": item["text"]} for item in tco["break_even"]],
        sensitivity_arms=sensitivity_arms,
        sensitivity=[_sensitivity_group(key, entries, sensitivity_arms, tco)
                     for key, entries in tco["sensitivity"].items() if entries],
    )


def _assumption_table(key: str, value: Any, kinds: set[str]) -> Table | None:
    """A nested assumption as a table: a dict of dicts (per arm kind, say) becomes one row per
    entry, trimmed to this run's arm kinds when it is keyed by kind. None for anything else."""
    if isinstance(value, dict) and value and all(isinstance(inner, dict) for inner in value.values()):
        rows = {name: inner for name, inner in value.items() if not (set(value) & kinds) or name in kinds}
        columns = _keys(rows.values())
        return Table(title=_words(key).capitalize(), note="", header=["", *(_words(c) for c in columns)],
                     rows=[[name, *(_plain(inner.get(c)) for c in columns)] for name, inner in rows.items()])
    return None


def _assumption(value: Any) -> str:
    """One assumption on one line; a flat group of them as 'setup hours 16, release hours 4'."""
    if isinstance(value, dict):
        return ", ".join(f"{_words(k)} {_plain(v)}" for k, v in value.items())
    return _plain(value)


def _keys(mappings: Any) -> list[str]:
    """The keys of several dicts, in first-seen order."""
    keys: list[str] = []
    for mapping in mappings:
        keys += [key for key in mapping if key not in keys]
    return keys


def _cumulative_table(tco: dict[str, Any]) -> Table:
    """The cumulative curves at a few months: what the TCO chart shows, as numbers."""
    horizon = tco["horizon_months"]
    step = max(1, round(horizon / 4))
    marks = sorted({0, *range(step, horizon, step), horizon})
    names = list(tco["arms"])
    rows = []
    for month in marks:
        row = [str(month)]
        for name in names:
            curve = tco["arms"][name]["cumulative_usd"]
            row.append(fmt.usd(curve[month]) if month < len(curve) else fmt.DASH)
        rows.append(row)
    return Table(title="Cumulative cost", note="dollars spent by the end of each month",
                 header=["Month", *names], rows=rows)


def _sensitivity_group(key: str, entries: list[dict[str, Any]], names: list[str],
                       tco: dict[str, Any]) -> SensitivityGroup:
    title, varied = SENSITIVITY.get(key, (_words(key).capitalize(), ""))
    price_drop = tco["assumptions"].get("annual_api_price_drop", 0.0)
    now: dict[str, Any] = {"requests_per_month": tco["requests_per_month"],
                           "retrain_every_months": tco["retrain_every_months"],
                           "price_drop": price_drop, "annual_drop": price_drop}
    group = SensitivityGroup(title=title, varied=varied, rows=[], cheapest=[], current=[])
    for entry in entries:
        parameter, value = next(((k, v) for k, v in entry.items() if k not in ("totals", "cheapest")), (key, None))
        group.varied = group.varied or _words(parameter)
        totals = entry["totals"]
        group.rows.append([_parameter(parameter, value), *(fmt.usd(totals.get(name)) for name in names)])
        best = entry.get("cheapest") if entry.get("cheapest") in names else (
            min(totals, key=totals.__getitem__) if totals else None)
        group.cheapest.append(names.index(best) + 1 if best else 0)
        group.current.append(parameter in now and value == now[parameter])
    return group


def _parameter(key: str, value: Any) -> str:
    if value is None and key.endswith("months"):
        return "never"  # no re-training cadence: the base model is never replaced
    if not fmt.is_number(value):
        return _plain(value)
    if key == "requests_per_month":
        return fmt.count(value)
    if key.endswith("months"):
        return fmt.months(value)
    if "drop" in key or "share" in key:
        share = f"{value * 100:.0f}%" if value <= 1 else f"{value:g}%"
        return f"{share} a year" if "annual" in key else share
    return f"{value:g}"


# -- learning curve, readiness, check, rebuild -------------------------------------------------


def _curve_view(curve: dict[str, Any], scale: fmt.QualityScale) -> CurveView:
    rows = [[fmt.count(p["n"]), scale.value(p["value"]), scale.interval(p["low"], p["high"])] for p in curve["points"]]
    return CurveView(arm=curve["arm"], text=curve["text"],
                     table=Table(title=curve["arm"], note="", header=["Training examples", "Quality", "95% CI"],
                                 rows=rows))


def _readiness_row(item: dict[str, Any]) -> ReadinessRow:
    mark, words = STATUS_MARKS.get(item["status"], ("·", item["status"].replace("_", " ")))
    return ReadinessRow(label=item["label"], status=item["status"], mark=mark, status_text=words,
                        detail=item["detail"] or "", fix=str(item.get("fix") or ""))


def _check_view(check: dict[str, Any]) -> CheckView:
    # The check report's shape belongs to `tunewise check` (CheckReport.to_dict()), not to the
    # verdict contract, so each part is read only when present.
    findings = []
    for finding in check.get("findings") or []:
        examples = []
        for example in (finding.get("examples") or [])[:3]:
            where = ":".join(str(example[k]) for k in ("file", "line") if example.get(k) is not None)
            text = str(example.get("text", "")).strip()
            examples.append(f"{where} {text}".strip() if where else text)
        findings.append(FindingRow(severity=str(finding.get("severity", "info")), code=str(finding.get("code", "")),
                                   count=fmt.count(finding.get("count")), summary=str(finding.get("summary", "")),
                                   examples=[e for e in examples if e]))
    return CheckView(
        sizes=[(split, fmt.count(n)) for split, n in (check.get("sizes") or {}).items()],
        row_errors=[(reason, fmt.count(n)) for reason, n in (check.get("row_error_counts") or {}).items()],
        findings=findings,
        notes=[str(note) for note in check.get("notes") or []],
    )


def _rebuild_view(rebuild: dict[str, Any], run_detail: dict[str, Any] | None) -> RebuildView:
    run: list[tuple[str, str]] = []
    if run_detail:
        run.append(("Status", str(run_detail.get("status", fmt.DASH))))
        run.append(("Started", fmt.timestamp(run_detail.get("created_at"))))
        if run_detail.get("finished_at"):
            run.append(("Finished", fmt.timestamp(run_detail["finished_at"])))
        for artifact in run_detail.get("artifacts") or []:
            run.append((f"Artifact: {artifact.get('kind')}", str(artifact.get("path") or artifact.get("name"))))
    return RebuildView(
        command=rebuild["command"],
        card_yaml=yaml.safe_dump(rebuild["card"], sort_keys=False, allow_unicode=True, width=100).strip(),
        data_hashes=_flat(rebuild["data_hashes"]),
        seeds=_flat(rebuild["seeds"]),
        config=_flat(rebuild["config"]),
        versions=_flat(rebuild["versions"]),
        extra=[(_words(key).capitalize(), _flat(value)) for key, value in rebuild.items()
               if key not in _REBUILD_SHOWN and isinstance(value, dict) and value],
        run=run,
    )


_REBUILD_SHOWN = {"command", "card", "data_hashes", "seeds", "config", "versions"}


def _flat(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as 'packages.torch = 2.13.0' lines: one row per leaf."""
    rows: list[tuple[str, str]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += _flat(value, prefix=f"{name}.")
        else:
            rows.append((name, _plain(value)))
    return rows


def _plain(value: Any) -> str:
    if value is None:
        return fmt.DASH
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _words(key: str) -> str:
    return key.replace("_usd", "").replace("_", " ")


def _number_or_none(value: Any) -> float | None:
    return float(value) if fmt.is_number(value) else None
