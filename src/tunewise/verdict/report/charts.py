"""The report's charts, drawn by matplotlib as SVG and inlined: no JavaScript, no network, crisp
at any zoom and in print.

Text is drawn as paths with the DejaVu Sans that matplotlib ships, so a chart looks the same on
every machine whatever fonts it has (the page's own text uses the reader's fonts). Maths
parsing is off: arm names and dollar amounts with two "$" must not turn into formulas. Each
function returns a Chart, or None when there is nothing to draw; arms that cannot be placed
are listed in ``Chart.left_out`` with the reason, never dropped silently.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from markupsafe import Markup
from matplotlib import patheffects, rc_context
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from tunewise.verdict.report import formatting as fmt
from tunewise.verdict.report.palette import BAR, INK, MUTED
from tunewise.verdict.report.svg_inline import inline_svg

WIDTH_IN = 8.0  # inches; the page scales every chart to its column, so this sets the type size
LABEL_SIZE = 8.5
HALO = [patheffects.withStroke(linewidth=3, foreground="white")]  # keeps a label legible over a line
LABEL_GAP_PT = 11.0  # vertical room one direct label needs
LABEL_CHAR_PT = 0.6 * LABEL_SIZE  # DejaVu Sans' mean advance, to estimate a label's width
EDGE_PX = 4.0  # room kept between a label and the figure's edge
LABEL_OFFSET_PT = 11.0  # from the point to its label: clear of the marker and the ring around the pick

_STYLE = {
    "svg.fonttype": "path",
    "svg.hashsalt": "tunewise-report",  # stable ids: the same verdict gives the same file
    "text.parse_math": False,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.edgecolor": MUTED,
    "axes.labelcolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#d8dee4",
    "grid.linewidth": 0.6,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelcolor": INK,
    "ytick.labelcolor": INK,
    "text.color": INK,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
}


@dataclass
class Chart:
    key: str  # also the id prefix inside the SVG
    title: str
    caption: str
    svg: Markup
    left_out: list[str] = field(default_factory=list)


def render_charts(verdict: dict[str, Any], colours: dict[str, str], scale: fmt.QualityScale,
                  goals: dict[str, float | None], order: list[str]) -> dict[str, Chart | None]:
    """Every chart of the report, by key; None where the verdict holds nothing to draw."""
    with rc_context(_STYLE):
        return {
            "quality_cost": quality_cost_chart(verdict, colours, scale, goals),
            "latency": latency_chart(verdict, colours, goals, order),
            "learning_curve": learning_curve_chart(verdict, colours, scale, goals),
            "tco": tco_chart(verdict, colours),
            "volume": volume_chart(verdict, colours),
        }


# -- quality versus cost ---------------------------------------------------------------------


def quality_cost_chart(verdict: dict[str, Any], colours: dict[str, str], scale: fmt.QualityScale,
                       goals: dict[str, float | None]) -> Chart | None:
    placed, left_out = [], []
    for arm in verdict["arms"]:
        if arm["quality"] is None:
            continue
        if arm["cost_per_1k_usd"] is None:
            left_out.append(f"{arm['name']} (no cost measured)")
        else:
            placed.append(arm)
    if not placed:
        return None
    costs = [arm["cost_per_1k_usd"] for arm in placed]
    positive = [c for c in costs if c > 0]
    # A log axis has no zero: a free arm sits a step left of the cheapest paid one, labelled $0.
    floor = min(positive) / 4 if positive else 1e-4
    xs = [c if c > 0 else floor for c in costs]
    recommended = verdict["recommendation"]["arm"]

    figure = Figure(layout="constrained", figsize=(WIDTH_IN, 4.2))
    ax = figure.add_subplot()
    ax.set_xscale("log")
    front = sorted((x, arm["quality"]["value"]) for x, arm in zip(xs, placed) if arm["pareto"])
    if len(front) > 1:
        ax.step([x for x, _ in front], [y for _, y in front], where="post", color=MUTED, linestyle="--",
                linewidth=1.1, label="Pareto front", zorder=1)
    elif front:
        ax.plot([], [], color=MUTED, linestyle="--", label="Pareto front (one arm)")
    for x, arm in zip(xs, placed):
        quality, colour = arm["quality"], colours[arm["name"]]
        spread = [[quality["value"] - quality["low"]], [quality["high"] - quality["value"]]]
        ax.errorbar(x, quality["value"], yerr=spread,
                    fmt="o", color=colour, markersize=7, capsize=3, elinewidth=1.4, zorder=3,
                    markeredgecolor="white", markeredgewidth=0.8)
        if arm["name"] == recommended:
            ax.plot(x, quality["value"], "o", markersize=15, markerfacecolor="none", markeredgecolor=INK,
                    markeredgewidth=1.3, zorder=4, label="recommended")
    bar = goals["quality_bar"]
    if bar is not None:
        ax.axhline(bar, color=BAR, linestyle=":", linewidth=1.2, zorder=2, label=f"quality bar {scale.value(bar)}")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: scale.axis(v)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.usd_tick(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    _pad_log_axis(ax, xs)
    lows = [arm["quality"]["low"] for arm in placed] + ([bar] if bar is not None else [])
    highs = [arm["quality"]["high"] for arm in placed] + ([bar] if bar is not None else [])
    span = max(max(highs) - min(lows), 0.05)
    ax.set_ylim(min(lows) - span * 0.08, max(highs) + span * 0.08)
    ax.set_xlabel("cost per 1,000 requests (log scale)")
    ax.set_ylabel(verdict["metric"])
    labels = [(x, arm["quality"]["value"], arm["name"] + (" ($0)" if arm["cost_per_1k_usd"] == 0 else ""))
              for x, arm in zip(xs, placed)]
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncol=3, borderaxespad=0)
    _settle_labels(figure, ax, lambda: _direct_labels(ax, labels, colours=[colours[arm["name"]] for arm in placed]))
    return _chart("quality_cost", figure,
                  title=f"{verdict['metric']} against cost per 1,000 requests",
                  caption="Up and to the left is better. Bars are 95% confidence intervals; the dashed staircase "
                          "joins the arms no other arm beats on both quality and cost.",
                  description="; ".join(f"{arm['name']}: {scale.value(arm['quality']['value'])} at "
                                        f"{fmt.usd(arm['cost_per_1k_usd'])} per 1,000" for arm in placed),
                  left_out=left_out)


# -- latency ---------------------------------------------------------------------------------


def latency_chart(verdict: dict[str, Any], colours: dict[str, str], goals: dict[str, float | None],
                  order: list[str]) -> Chart | None:
    by_name = {arm["name"]: arm for arm in verdict["arms"]}
    measured = [by_name[name] for name in order if by_name[name]["latencies_ms"]]
    left_out = [f"{arm['name']} (no latencies recorded)" for arm in verdict["arms"]
                if arm["quality"] is not None and not arm["latencies_ms"]]
    if not measured:
        return None
    figure = Figure(layout="constrained", figsize=(WIDTH_IN, 0.55 * len(measured) + 1.3))
    ax = figure.add_subplot()
    samples = [np.asarray(arm["latencies_ms"], dtype=float) for arm in measured]
    positions = np.arange(len(measured))[::-1]  # the first arm at the top
    everything = np.concatenate(samples)
    use_log = everything.min() > 0 and everything.max() / everything.min() > 20
    if use_log:
        ax.set_xscale("log")
    boxes = ax.boxplot(samples, positions=positions, orientation="horizontal", whis=(5, 95), showfliers=False,
                       widths=0.55, patch_artist=True, medianprops={"color": INK, "linewidth": 1.4},
                       whiskerprops={"color": MUTED}, capprops={"color": MUTED})
    rng = np.random.default_rng(0)  # the jitter is decoration; seeded so the file is reproducible
    for box, arm, position, values in zip(boxes["boxes"], measured, positions, samples):
        colour = colours[arm["name"]]
        box.set(facecolor=colour + "33", edgecolor=colour, linewidth=1.2)
        shown = values if len(values) <= 400 else rng.choice(values, 400, replace=False)
        # Few requests: bigger, bolder dots (each one matters); many: small and faint, a texture.
        size, alpha = (14, 0.7) if len(shown) <= 60 else (6, 0.45)
        ax.scatter(shown, position + rng.uniform(-0.2, 0.2, len(shown)), s=size, color=colour, alpha=alpha,
                   linewidths=0, zorder=3)
    limit = goals["latency_p95_ms"]
    if limit is not None:
        ax.axvline(limit, color=BAR, linestyle=":", linewidth=1.2, label=f"p95 limit {fmt.milliseconds(limit)}")
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), borderaxespad=0)
    ax.set_yticks(positions, [arm["name"] for arm in measured])
    ax.grid(axis="y", visible=False)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.milliseconds(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if use_log:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
    ax.set_xlabel("latency per request" + (" (log scale)" if use_log else ""))
    return _chart("latency", figure, title="Latency per request",
                  caption="Boxes span the middle half of requests, the line inside is the median (p50), whiskers "
                          "reach p5 and p95; dots are single requests.",
                  description="; ".join(f"{arm['name']}: p50 {fmt.milliseconds(arm['latency_p50_ms'])}, "
                                        f"p95 {fmt.milliseconds(arm['latency_p95_ms'])}" for arm in measured),
                  left_out=left_out)


# -- learning curve --------------------------------------------------------------------------


def learning_curve_chart(verdict: dict[str, Any], colours: dict[str, str], scale: fmt.QualityScale,
                         goals: dict[str, float | None]) -> Chart | None:
    curves = [curve for curve in verdict["learning_curve"] if curve["points"]]
    if not curves:
        return None
    figure = Figure(layout="constrained", figsize=(WIDTH_IN, 3.4))
    ax = figure.add_subplot()
    sizes = sorted({point["n"] for curve in curves for point in curve["points"]})
    if sizes[0] > 0 and sizes[-1] / sizes[0] >= 8:
        ax.set_xscale("log")
        ax.set_xticks(sizes, [fmt.count_short(n) for n in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
    for curve in curves:
        points = sorted(curve["points"], key=lambda p: p["n"])
        colour = colours.get(curve["arm"], INK)
        ns = [p["n"] for p in points]
        ax.fill_between(ns, [p["low"] for p in points], [p["high"] for p in points], color=colour, alpha=0.15,
                        linewidth=0)
        ax.plot(ns, [p["value"] for p in points], "o-", color=colour, markersize=4, linewidth=1.6,
                label=curve["arm"])
    bar = goals["quality_bar"]
    if bar is not None:
        ax.axhline(bar, color=BAR, linestyle=":", linewidth=1.2, label=f"quality bar {scale.value(bar)}")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: scale.axis(v)))
    ax.set_xlabel("training examples")
    ax.set_ylabel(verdict["metric"])
    ax.legend(loc="lower right")
    return _chart("learning_curve", figure, title="Learning curve",
                  caption="Quality as the training set grows; bands are 95% confidence intervals. A curve still "
                          "climbing at the right edge says more data would pay.",
                  description="; ".join(curve["text"] for curve in curves))


# -- total cost of ownership -----------------------------------------------------------------


def tco_chart(verdict: dict[str, Any], colours: dict[str, str]) -> Chart | None:
    tco = verdict["tco"]
    if not tco or not tco["arms"]:
        return None
    figure = Figure(layout="constrained", figsize=(WIDTH_IN, 3.8))
    ax = figure.add_subplot()
    curves = {name: np.asarray(data["cumulative_usd"], dtype=float) for name, data in tco["arms"].items()}
    for name, curve in curves.items():
        ax.plot(np.arange(len(curve)), curve, color=colours.get(name, INK), linewidth=2)
    crossings = []
    for pair in _serious_pairs(tco):
        for month, usd in _crossings(curves[pair[0]], curves[pair[1]]):
            crossings.append((month, usd))
            ax.plot(month, usd, "o", markersize=7, markerfacecolor="white", markeredgecolor=INK, zorder=4)
            ax.annotate(f"even at month {month:.1f}", (month, usd), xytext=(6, -12), textcoords="offset points",
                        fontsize=8, color=INK, path_effects=HALO)
    horizon = max(len(curve) for curve in curves.values()) - 1
    ax.set_xlim(0, horizon)
    ax.set_xticks(range(0, horizon + 1, max(1, horizon // 12)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.usd_tick(v)))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("month")
    ax.set_ylabel("cumulative cost")
    _settle_labels(figure, ax, lambda: _end_labels(ax, [(horizon, curve[-1], name) for name, curve in curves.items()],
                                               [colours.get(name, INK) for name in curves]))
    caption = (f"Everything each arm costs over {fmt.months(tco['horizon_months'])} at "
               f"{fmt.count(tco['requests_per_month'])} requests a month: one-time costs at month 0, then "
               "inference, re-training, monitoring and re-labelling.")
    if crossings:
        caption += " Circles mark where one arm's running total overtakes another's."
    return _chart("tco", figure, title="Total cost of ownership over time", caption=caption,
                  description="; ".join(f"{name}: {fmt.usd(data['total_usd'])} in total"
                                        for name, data in tco["arms"].items()))


def volume_chart(verdict: dict[str, Any], colours: dict[str, str]) -> Chart | None:
    """Horizon totals against monthly volume: where the lines cross is the break-even volume."""
    tco = verdict["tco"]
    rows = (tco or {}).get("sensitivity", {}).get("volume") or []
    rows = [row for row in rows if fmt.is_number(row.get("requests_per_month")) and row["requests_per_month"] > 0]
    if len(rows) < 2:
        return None
    rows.sort(key=lambda row: row["requests_per_month"])
    volumes = np.array([row["requests_per_month"] for row in rows], dtype=float)
    names = list(dict.fromkeys(name for row in rows for name in row["totals"]))
    figure = Figure(layout="constrained", figsize=(WIDTH_IN, 3.8))
    ax = figure.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    series = {}
    for name in names:
        totals = np.array([row["totals"].get(name, np.nan) for row in rows], dtype=float)
        series[name] = totals
        ax.plot(volumes, totals, color=colours.get(name, INK), linewidth=2)
    today = tco["requests_per_month"]
    if today > 0:
        ax.axvline(today, color=MUTED, linestyle="--", linewidth=1)
        ax.annotate(f"today {fmt.count_short(today)}/month", (today, 0), xycoords=("data", "axes fraction"),
                    xytext=(4, 4), textcoords="offset points", fontsize=8, color=MUTED, path_effects=HALO)
    for item in tco["break_even"]:
        # The producer may list every crossing (curves with a step can cross twice); else the first.
        for volume in item.get("crossings") or [item["requests_per_month"]]:
            if not fmt.is_number(volume) or item["a"] not in series or not volumes[0] <= volume <= volumes[-1]:
                continue
            total = float(np.exp(np.interp(np.log(volume), np.log(volumes), np.log(series[item["a"]]))))
            ax.plot(volume, total, "o", markersize=7, markerfacecolor="white", markeredgecolor=INK, zorder=4)
            ax.annotate(f"break-even {fmt.count_short(volume)}", (volume, total), xytext=(6, 6),
                        textcoords="offset points", fontsize=8, color=INK, path_effects=HALO)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.count_short(v)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.usd_tick(v)))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("requests per month (log scale)")
    ax.set_ylabel(f"total over {tco['horizon_months']} months")
    ends = [(volumes[-1], series[name][-1], name) for name in names]
    _settle_labels(figure, ax, lambda: _end_labels(ax, ends, [colours.get(name, INK) for name in names]))
    return _chart("volume", figure, title="Total cost against traffic",
                  caption="The horizon's total at other volumes. Where two lines cross, the cheaper choice changes: "
                          "the break-even volume.",
                  description="; ".join(item["text"] for item in tco["break_even"]) or "total cost by volume")


# -- helpers ---------------------------------------------------------------------------------


def _chart(key: str, figure: Figure, *, title: str, caption: str, description: str,
           left_out: list[str] | None = None) -> Chart:
    buffer = io.StringIO()
    # Every figure keeps its width (no tight bounding box), so all charts scale to the column
    # alike and their type ends up the same size on the page.
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = inline_svg(buffer.getvalue(), f"chart-{key.replace('_', '-')}", title=title, description=description)
    return Chart(key=key, title=title, caption=caption, svg=svg, left_out=left_out or [])


def _serious_pairs(tco: dict[str, Any]) -> list[tuple[str, str]]:
    """The pairs the verdict compares (its break-even list); both must have a curve."""
    pairs = []
    for item in tco["break_even"]:
        pair = (item["a"], item["b"])
        if pair[0] in tco["arms"] and pair[1] in tco["arms"] and pair not in pairs:
            pairs.append(pair)
    return pairs


def _crossings(a: np.ndarray, b: np.ndarray) -> list[tuple[float, float]]:
    """Months (interpolated) where curve a and curve b swap order, with the dollars there."""
    found = []
    difference = a[: min(len(a), len(b))] - b[: min(len(a), len(b))]
    for month in range(1, len(difference)):
        before, after = difference[month - 1], difference[month]
        if before != 0 and np.sign(before) != np.sign(after):
            share = before / (before - after)
            x = month - 1 + share
            found.append((x, float(a[month - 1] + share * (a[month] - a[month - 1]))))
    return found


def _pad_log_axis(ax: Axes, xs: list[float]) -> None:
    low, high = min(xs), max(xs)
    if high / low < 10:  # less than a decade: widen so the ticks say something
        middle = np.sqrt(low * high)
        low, high = middle / 4, middle * 4
    ax.set_xlim(low / 2.2, high * 2.2)


def _settle_labels(figure: Figure, ax: Axes, place: Callable[[], list[Artist]]) -> None:
    """Direct labels are spaced in points from their data positions, which are final only once
    the layout has run. So: lay out (constrained: ticks, axis labels, legend), freeze it, place
    the labels with the final geometry, then narrow the axes by whatever the labels overhang the
    figure (constrained layout does not count annotations). Narrowing leaves the vertical scale,
    and so the labels' spacing, as it was."""
    figure.draw_without_rendering()
    figure.set_layout_engine("none")
    artists = place()
    renderer = FigureCanvasAgg(figure).get_renderer()
    extents = [artist.get_window_extent(renderer) for artist in artists]
    if not extents:
        return
    width = figure.bbox.width
    overhang_right = max(0.0, max(box.x1 for box in extents) - (width - EDGE_PX))
    overhang_left = max(0.0, EDGE_PX - min(box.x0 for box in extents))
    if overhang_left or overhang_right:
        box = ax.get_position()
        ax.set_position([box.x0 + overhang_left / width, box.y0,
                         box.width - (overhang_left + overhang_right) / width, box.height])


def _direct_labels(ax: Axes, points: list[tuple[float, float, str]], colours: list[str]) -> list[Artist]:
    """Name each point beside it. Points in the right third are labelled on their left, so no
    label runs off the plot; a label that would overlap one already placed (both vertically and
    horizontally) moves up, with a thin line back to its point."""
    to_points = 72.0 / ax.get_figure().dpi
    left_bound, right_bound = ax.get_xlim()
    log_span = np.log(right_bound) - np.log(left_bound)
    labels = []
    for (x, y, text), colour in zip(points, colours):
        px, py = (float(v) * to_points for v in ax.transData.transform((x, y)))
        on_left = (np.log(x) - np.log(left_bound)) / log_span > 0.66
        width = LABEL_CHAR_PT * len(text)
        start = px - LABEL_OFFSET_PT - width if on_left else px + LABEL_OFFSET_PT
        labels.append((py, x, y, text, colour, on_left, (start, start + width)))
    placed: list[tuple[tuple[float, float], float]] = []
    artists: list[Artist] = []
    for py, x, y, text, colour, on_left, span in sorted(labels, key=lambda label: label[0]):
        target = py
        for other_span, other_target in sorted(placed, key=lambda item: item[1]):
            horizontal = span[0] < other_span[1] and other_span[0] < span[1]
            if horizontal and abs(target - other_target) < LABEL_GAP_PT:
                target = other_target + LABEL_GAP_PT
        placed.append((span, target))
        line = {"arrowstyle": "-", "color": colour, "linewidth": 0.6, "shrinkA": 0, "shrinkB": 5}
        artists.append(ax.annotate(
            text, (x, y), xytext=(-LABEL_OFFSET_PT if on_left else LABEL_OFFSET_PT, target - py - 3),
            textcoords="offset points", ha="right" if on_left else "left", fontsize=LABEL_SIZE, color=INK,
            arrowprops=line if abs(target - py) >= 4 else None, path_effects=HALO))
    return artists


def _end_labels(ax: Axes, ends: list[tuple[float, float, str]], colours: list[str]) -> list[Artist]:
    """Label each line at its right end (direct labels read faster than a legend), spread apart."""
    to_points = 72.0 / ax.get_figure().dpi
    order = sorted(range(len(ends)), key=lambda i: ax.transData.transform(ends[i][:2])[1])
    placed: list[float] = []
    artists: list[Artist] = []
    for index in order:
        x, y, text = ends[index]
        y_pt = ax.transData.transform((x, y))[1] * to_points
        target = max(y_pt, placed[-1] + LABEL_GAP_PT) if placed else y_pt
        placed.append(target)
        artists.append(ax.annotate(text, (x, y), xytext=(6, target - y_pt - 3), textcoords="offset points",
                                   fontsize=LABEL_SIZE, color=colours[index], annotation_clip=False,
                                   path_effects=HALO))
    return artists

