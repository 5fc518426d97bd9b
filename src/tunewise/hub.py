"""Talking to a model hub, carefully: this machine (and many users') may reach none.

Both the LLM loader and the embedding loader try the local hub cache first and look at the
hub only when it is allowed and reachable, because huggingface_hub retries an unreachable
host for about 50 seconds before it gives up.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlparse

T = TypeVar("T")

DEFAULT_ENDPOINT = "https://huggingface.co"


def offline_requested() -> bool:
    """True when the user switched hub access off (read at call time: huggingface_hub reads
    these once, when it is first imported)."""
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(flag, "").lower() in ("1", "true", "yes", "on") for flag in flags)


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT)


def reachable(url: str, timeout_s: float = 3.0) -> bool:
    """Can a TCP connection to ``url``'s host be opened within ``timeout_s``?"""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout_s):
            return True
    except (OSError, RuntimeError):  # RuntimeError: a test harness that blocks remote calls
        return False


def cache_first(load: Callable[..., T]) -> T:
    """``load(local_files_only=True)`` from the hub cache; only if that misses, and hub access
    is allowed and reachable, ``load()`` from the hub. An unreachable hub fails in seconds
    (OSError) instead of huggingface_hub's ~50 s of retries."""
    try:
        return load(local_files_only=True)
    except OSError:
        if offline_requested():
            raise
    endpoint = hub_endpoint()
    if not reachable(endpoint):
        raise OSError(f"{endpoint} is unreachable and the model is not in the local hub cache")
    return load()
