"""Task cards, loading and the data check."""

from tunewise.task.card import Kind, TaskCard, load_card, parse_card
from tunewise.task.check import check_task
from tunewise.task.dataset import Dataset, Example
from tunewise.task.findings import CheckReport, QualityFinding, ReadinessItem, RowError
from tunewise.task.load import load_task

__all__ = [
    "CheckReport", "Dataset", "Example", "Kind", "QualityFinding", "ReadinessItem", "RowError", "TaskCard",
    "check_task", "load_card", "load_task", "parse_card",
]
