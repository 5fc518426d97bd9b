"""How ``tunewise adapters`` shows adapters on a terminal (the library returns data, this prints it)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from tunewise.display import console
from tunewise.train.adapter import AdapterInfo


def print_adapters(infos: Sequence[AdapterInfo]) -> None:
    if not infos:
        console.print("No adapters yet: `tunewise bakeoff TASK --arms lora` trains one.")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("name", "status", "base model", "task", "data", "metrics", "path"):
        table.add_column(column, overflow="fold")
    for info in infos:
        table.add_row(info.name, info.status, info.base_model, info.task or "-",
                      (info.data_sha256 or "-")[:12], metrics_text(info.metrics), str(info.path))
    console.print(table)


def metrics_text(metrics: dict) -> str:
    """e.g. "val 0.412 @ step 120/160, early_stop, 6.1 min"."""
    if not metrics:
        return "-"
    parts = []
    if metrics.get("best_val_loss") is not None:
        parts.append(f"val {metrics['best_val_loss']:.3f} @ step {metrics.get('best_step')}/{metrics.get('steps')}")
    else:
        parts.append(f"{metrics.get('steps')} steps")
    parts.append(str(metrics.get("stopped")))
    seconds = metrics.get("train_seconds") or 0
    parts.append(f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s")
    return ", ".join(parts)
