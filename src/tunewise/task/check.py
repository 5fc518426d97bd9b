"""`tunewise check`: every bad row, the data-quality findings, and the readiness checklist.

``check_task`` never raises for bad rows: they all go into ``CheckReport.row_errors`` with
file, line and reason. It raises only when it cannot look at the data at all: a missing or
unreadable data file, an unsupported file type (DataError), or a bad output_schema file
(TaskCardError).

When any row is bad the data cannot be loaded, so the quality findings (which describe a
loadable dataset) are skipped and the readiness item that counts examples is ``unknown``;
``CheckReport.notes`` says so.
"""

from __future__ import annotations

import time

from tunewise.task.card import TaskCard
from tunewise.task.findings import CheckReport
from tunewise.task.load import build_dataset, read_task_rows
from tunewise.task.quality import quality_findings
from tunewise.task.readiness import PromptingGap, readiness


def check_task(card: TaskCard, *, prompting_gap: PromptingGap | None = None) -> CheckReport:
    """Check every row of the card's data files and describe the data."""
    started = time.perf_counter()
    rows = read_task_rows(card)
    dataset = build_dataset(card, rows)
    notes: list[str] = []
    if rows.errors:
        bad = len(rows.errors)
        notes.append(f"{bad:,} bad row{'s' if bad != 1 else ''}: the data cannot be loaded until they are fixed; "
                     "quality findings were skipped and sizes count only the valid rows")
        findings = []
        items = readiness(card, None, findings, prompting_gap)
    else:
        findings = quality_findings(dataset)
        items = readiness(card, dataset, findings, prompting_gap)
    return CheckReport(
        card=card,
        files={role: str(path) for role, path in rows.files.items()},
        sizes=dataset.sizes(),
        labels=dataset.labels,
        row_errors=rows.errors,
        findings=findings,
        readiness=items,
        data_hashes=rows.data_hashes,
        elapsed_s=time.perf_counter() - started,
        notes=notes,
    )
