"""tunewise: prompt, retrieve, fine-tune, distill or cascade? Measured on your own data.

The public API, small on purpose (the CLI is a thin client of exactly this)::

    import tunewise as tw

    card = tw.load_card("examples/support-tickets/task.yaml")
    report = tw.check_task(card)          # bad rows, data-quality findings, readiness
    dataset = tw.load_task(card)          # frozen train / validation / test splits
    metric = tw.resolve_metric(card.metric_name, card.kind, labels=dataset.labels)
    estimate = tw.bootstrap_ci(metric, predictions, [e.answers for e in dataset.test])
    with tw.open_store() as store:        # SQLite by default, PostgreSQL by URL
        store.list_runs()
"""

from importlib.metadata import PackageNotFoundError, version

from tunewise.errors import DataError, MetricError, StoreError, TaskCardError, TunewiseError
from tunewise.scoring import bootstrap_ci, holm, paired_comparison, resolve_metric
from tunewise.store import open_store
from tunewise.task import (
    CheckReport,
    Dataset,
    Example,
    Kind,
    TaskCard,
    check_task,
    load_card,
    load_task,
    parse_card,
)

try:
    __version__ = version("tunewise")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CheckReport", "DataError", "Dataset", "Example", "Kind", "MetricError", "StoreError", "TaskCard",
    "TaskCardError", "TunewiseError", "bootstrap_ci", "check_task", "holm", "load_card", "load_task",
    "open_store", "paired_comparison", "parse_card", "resolve_metric",
]
