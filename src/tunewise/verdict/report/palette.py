"""One colour per arm, the same in every chart and in the arms table's swatches.

Okabe & Ito's palette stays distinguishable for the common colour-vision deficiencies and in
greyscale print better than matplotlib's default cycle; past eight arms it repeats, and the
labels (never colour alone) tell arms apart.
"""

from __future__ import annotations

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"]
INK = "#1f2328"  # text and axes
MUTED = "#6e7781"  # grid, secondary marks
BAR = "#B42318"  # the quality bar and latency limit: a goal line, not an arm


def arm_colours(names: list[str]) -> dict[str, str]:
    """Colours by arm name, in the given order (the verdict's arm order, so they are stable)."""
    colours: dict[str, str] = {}
    for name in names:
        if name not in colours:
            colours[name] = OKABE_ITO[len(colours) % len(OKABE_ITO)]
    return colours
