"""kill -9 at random steps, once in the middle of writing a checkpoint, then resume: the final
adapter equals an uninterrupted run's (CPU, fp32, same seed, same data order, LoRA dropout on).

Training runs in real child processes, killed with SIGKILL: by this test at a random step
(which may land during an evaluation or a save), and by the child itself halfway through
writing a checkpoint file (the test-only TUNEWISE_TEST_KILL_DURING_SAVE hook). The random steps
are drawn from a seed printed on failure.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_training import RESUMABLE, adapter_tensors, tiny_pairs, validation_pairs

from tunewise.models.local import LocalBackend
from tunewise.train import train_adapter, verify_adapter
from tunewise.train.checkpoint import KILL_DURING_SAVE_ENV

TESTS = Path(__file__).resolve().parent

CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from tiny_training import RESUMABLE, tiny_pairs, validation_pairs
from tunewise.models.local import LocalBackend
from tunewise.train import train_adapter

def progress(event):
    print(f"{event.event} {event.step} {event.message}", flush=True)

backend = LocalBackend.load(sys.argv[1], device="cpu", dtype="float32")
result = train_adapter(backend, tiny_pairs(), validation_pairs(), RESUMABLE, out_dir=Path(sys.argv[2]),
                       progress=progress)
print(f"done {result.resumed_from} {result.stopped}", flush=True)
"""


def child(model: Path, out: Path, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(model), str(out), str(TESTS)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_at_step(process: subprocess.Popen, step: int) -> list[str]:
    lines = []
    for line in process.stdout:
        lines.append(line.strip())
        if line.startswith(f"step {step} "):
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    return lines


def test_kill_9_at_random_steps_and_mid_save_then_resume_equals_an_uninterrupted_run(tiny_llama, tmp_path):
    seed = random.SystemRandom().randrange(10**6)
    draw = random.Random(seed)
    s = RESUMABLE.resolve(len(tiny_pairs()))
    every = s.checkpoint_every
    out = tmp_path / "killed"
    context = f"(random seed {seed})"

    # 1. SIGKILL from outside at a random step after the first checkpoint.
    first_kill = draw.randrange(every + 1, s.total_steps // 2)
    lines = kill_at_step(child(tiny_llama, out), first_kill)
    assert lines[-1] == f"step {first_kill}", f"{context} child output: {lines[-5:]}"

    # 2. Resumed, then killed by itself halfway through writing a later checkpoint's first file.
    save_kill = draw.choice(range(first_kill // every * every + 2 * every, s.total_steps, every))
    process = child(tiny_llama, out, {KILL_DURING_SAVE_ENV: str(save_kill)})
    output, errors = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, f"{context} {output[-500:]} {errors[-2000:]}"
    assert "resumed from the checkpoint at step" in output, context
    half_written = out / "checkpoints" / f"step-{save_kill:06d}"
    assert half_written.is_dir() and not (half_written / "COMPLETE.json").exists(), context

    # 3. Resumed to the end: the half-written checkpoint is skipped, the one before it used.
    process = child(tiny_llama, out)
    output, errors = process.communicate(timeout=120)
    assert process.returncode == 0, f"{context} {errors[-2000:]}"
    assert f"checkpoint step-{save_kill:06d} is incomplete" in output, context
    assert f"done {save_kill - every} converged" in output, f"{context} {output[-300:]}"

    # The reference: the same training, never interrupted (in this process, one thread).
    backend = LocalBackend.load(str(tiny_llama), device="cpu", dtype="float32")
    reference = train_adapter(backend, tiny_pairs(), validation_pairs(), RESUMABLE, out_dir=tmp_path / "reference")
    expected, got = adapter_tensors(reference.adapter_dir), adapter_tensors(out)
    assert got.keys() == expected.keys()
    for name in expected:
        difference = (got[name] - expected[name]).abs().max().item()
        assert difference <= 1e-6, f"{context} {name} differs by {difference}"
    assert verify_adapter(out)["metrics"]["best_step"] == reference.best_step


@pytest.mark.parametrize("hook", [None, "7"])
def test_the_kill_hook_fires_only_at_its_step(hook, monkeypatch, tmp_path):
    from tunewise.train.checkpoint import Checkpoint, rng_tensors, write_checkpoint

    if hook is not None:
        monkeypatch.setenv(KILL_DURING_SAVE_ENV, hook)
    folder = write_checkpoint(tmp_path, Checkpoint(3, {"w": torch.zeros(2)}, None, {}, rng_tensors(), {}), keep=2)
    assert (folder / "COMPLETE.json").is_file()
