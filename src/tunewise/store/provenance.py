"""What a run records so it can be rebuilt: the card's identity and the software and machine
it ran on.

Versions come from installed package metadata (importlib.metadata), never from importing the
packages: importing torch just to read its version would add seconds to every run.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from importlib import metadata
from typing import Any

from tunewise.store.digests import sha256_json
from tunewise.task.card import TaskCard

# Packages whose version can change a result. Those not installed are left out.
KEY_PACKAGES = (
    "tunewise",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "tokenizers",
    "safetensors",
    "gguf",
    "sentence-transformers",
    "openai",
    "numpy",
    "scipy",
    "scikit-learn",
    "statsmodels",
    "rouge-score",
    "pydantic",
    "sqlalchemy",
    "alembic",
    "psycopg",
)


def card_document(card: TaskCard) -> dict[str, Any]:
    """The card as JSON data: every field, defaults included, paths as written."""
    return card.model_dump(mode="json")


def card_hash(card: TaskCard) -> str:
    """Identity of a card's content: two cards that say the same thing hash the same."""
    return sha256_json(card_document(card))


def environment() -> dict[str, Any]:
    """Python, platform, CPU and key package versions of this process (a fresh copy)."""
    python, system, machine, cpu, cpus, packages = _environment()
    return {
        "python": python,
        "platform": system,
        "machine": machine,
        "cpu": cpu,
        "cpu_count": cpus,
        "packages": dict(packages),
    }


@functools.cache
def _environment() -> tuple[str, str, str, str, int | None, tuple[tuple[str, str], ...]]:
    return (
        f"{platform.python_implementation()} {platform.python_version()}",
        platform.platform(),
        platform.machine(),
        _cpu_model(),
        os.cpu_count(),
        tuple(_package_versions(KEY_PACKAGES)),
    )


def _package_versions(names: tuple[str, ...]) -> list[tuple[str, str]]:
    found = []
    for name in names:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return found


def _cpu_model() -> str:
    # platform.processor() is empty or just "x86_64" on Linux; /proc/cpuinfo names the CPU.
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
                for line in info:
                    key, _, value = line.partition(":")
                    if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                        return value.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine() or "unknown"
