"""The machine a benchmark ran on, as both throughput benchmarks print it in their header."""

from __future__ import annotations

import os
import platform
from pathlib import Path

SIMD_FLAGS = ("avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")  # what CPU matmul speed hinges on


def machine() -> dict:
    """Cores, CPU model, the SIMD extensions above it has, and the load average at the start."""
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                 platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    simd = [f for f in SIMD_FLAGS if f in flags]
    return {"nproc": os.cpu_count(), "cpu": model, "simd": simd, "loadavg": os.getloadavg()}
