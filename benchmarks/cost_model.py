"""Accuracy of the cost model: does the TCO's price of a request match what a new batch costs?

For each local arm (embedding classifier, zero-shot and nearest-neighbour few-shot on
smollm2-135m-instruct, on the bundled support-ticket task):

1. bake-off: the real `run_bakeoff` answers a seeded sample of the test split, storing every
   answer with its measured compute time (no answer reused from the call cache);
2. predict: the verdict reads that run back (`verdict.evidence`) and prices a request the way
   the TCO does (`verdict.pricing.cost_input`: mean measured compute seconds per request once
   warm - the first batch, which also pays one-time warm-up, left out - x the card's machine
   price). The prediction for a held-out batch of n requests is n x that;
3. measure: the same arm, prepared again, answers a held-out batch (a seeded sample of the
   validation split: inputs the bake-off never saw) in its own batch size; the wall time of
   its `predict` calls is the measured compute, x the machine price the measured cost.

Error = |predicted - measured| / measured, per arm; the target is within 15% for every arm.
Before the bake-off, the arm answers a few training examples once, unmeasured, so the shared
model is warm (a served model is; see ``ArmEvidence.steady_compute_s_per_request`` for how the
cost model leaves a cold first batch out). The machine is shared, and its load swings by
minutes, so the two are interleaved: the held-out candidate is prepared first, and after each
batch the bake-off stores, one held-out batch runs (from the bake-off's progress callback), so
a busy spell slows both alike. The model and the embedder are loaded once and shared.
Embeddings of the *training* set come from the run store's cache (``$TUNEWISE_HOME``) after
the first run; request-time embeddings are never cached (the arms encode with use_cache=False),
so both the bake-off and the held-out batch pay for them as production would.

    python benchmarks/cost_model.py --quick          # 8 + 8 examples per arm
    python benchmarks/cost_model.py                  # 40 + 40

The last line is the key figure: ``worst error 7.2% (embed_classifier 3.1%, zero_shot 5.0%, ...)``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "examples" / "support-tickets" / "task.yaml"
MODEL = "smollm2-135m-instruct"
ARMS = ("embed_classifier", "zero_shot", "few_shot_nearest")
TARGET = 0.15


@dataclass
class ArmAccuracy:
    arm: str
    sample: int
    heldout: int
    compute_ms_per_request: float  # from the bake-off, as the TCO reads it
    predicted_s: float
    measured_s: float
    predicted_usd: float
    measured_usd: float
    bakeoff_s: float  # wall time of the arm's bake-off, prepare included

    @property
    def error(self) -> float:
        return abs(self.predicted_s - self.measured_s) / self.measured_s


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="8 bake-off and 8 held-out examples per arm (under 2 minutes)")
    p.add_argument("--sample", type=int, help="bake-off test examples per arm (default 40; quick 8)")
    p.add_argument("--heldout", type=int, help="held-out validation examples per arm (default 40; quick 8)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arm kinds (default {','.join(ARMS)})")
    p.add_argument("--model", default=MODEL, help=f"model for the prompting arms (default {MODEL})")
    p.add_argument("--task", type=Path, default=TASK, help="task card (default: the bundled support-ticket task)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-warm-up", dest="warm_up", action="store_false",
                   help="do not warm the model before the bake-off (then its first batch carries the warm-up)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    args.sample = args.sample or (8 if args.quick else 40)
    args.heldout = args.heldout or (8 if args.quick else 40)
    return args


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"nproc": os.cpu_count(), "cpu": cpu, "loadavg": [round(x, 2) for x in os.getloadavg()]}


class _SharedBackend:
    """A loaded backend the bake-off may 'close' without unloading it: the held-out batch
    reuses the same weights, and loading twice would only add noise and minutes."""

    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def close(self) -> None:
        pass


class _HeldOut:
    """Runs the held-out batches, one after each batch the bake-off stores (an Observer), and
    adds up the wall time of their ``predict`` calls: the measured compute."""

    def __init__(self, candidate, batches: list):
        self.candidate = candidate
        self.pending = list(batches)
        self.seconds = 0.0
        self.batch_seconds: list[float] = []

    def _one(self) -> None:
        batch = self.pending.pop(0)
        tick = time.perf_counter()
        self.candidate.predict(batch)
        self.batch_seconds.append(time.perf_counter() - tick)
        self.seconds += self.batch_seconds[-1]

    # the bake-off's Observer interface
    def run_started(self, run_id: int, resumed: bool, n_examples: int) -> None: ...
    def arm_started(self, name: str, total: int, already: int) -> None: ...
    def arm_finished(self, result) -> None: ...

    def arm_progress(self, name: str, done: int) -> None:
        if self.pending:
            self._one()

    def finish(self) -> None:
        while self.pending:
            self._one()


def _batch_seconds(latencies, size: int) -> list[float]:
    """The bake-off's batch times: it stores each answer with its batch's time shared out."""
    return [float(sum(latencies[start:start + size])) for start in range(0, len(latencies), size)]


def _seconds(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in values) + "]"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from tunewise.arms.base import ArmContext
    from tunewise.bakeoff import BakeoffOptions, plan_arms, run_bakeoff
    from tunewise.knowledge.embed import Embedder
    from tunewise.models.load import load_backend
    from tunewise.store import open_store
    from tunewise.task import load_card, load_task
    from tunewise.verdict.evidence import load_evidence
    from tunewise.verdict.pricing import cost_input

    started = time.monotonic()
    print(f"machine: {json.dumps(machine())}")
    print(f"command: python benchmarks/cost_model.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    card = load_card(args.task)
    dataset = load_task(card)
    pool = dataset.validation
    heldout = random.Random(args.seed).sample(pool, min(args.heldout, len(pool)))
    price = card.costs.machine_per_hour
    print(f"task: {card.name} ({len(dataset.test)} test, {len(pool)} validation examples); bake-off sample "
          f"{args.sample} test examples per arm, held-out batch {len(heldout)} validation examples; "
          f"machine price ${price}/h")

    backends: dict[str, _SharedBackend] = {}

    def shared_backend(spec: str) -> _SharedBackend:
        if spec not in backends:
            backends[spec] = _SharedBackend(load_backend(spec, card))
        return backends[spec]

    embedder_box: list[Embedder] = []
    results: list[ArmAccuracy] = []
    with tempfile.TemporaryDirectory() as scratch, open_store() as cache_store, \
            open_store(f"sqlite:///{Path(scratch) / 'runs.db'}") as runs:

        def shared_embedder() -> Embedder:
            if not embedder_box:
                embedder_box.append(Embedder.load(store=cache_store))  # training vectors cached across runs
            return embedder_box[0]

        for kind in [a.strip() for a in args.arms.split(",") if a.strip()]:
            (arm,) = plan_arms(card, [kind], [args.model])
            # The held-out candidate first, so its batches can run between the bake-off's.
            candidate = arm.prepare(ArmContext(dataset=dataset, backend=shared_backend, embedder=shared_embedder,
                                               seed=args.seed))
            size = max(1, candidate.batch_size())
            # Warm the shared model once (weights paged in, the shared prompt prefix cached): a
            # served model is warm, and a one-batch bake-off (--quick) has no later batch for the
            # cost model to price from. Training examples, so neither measured set is touched.
            if args.warm_up:
                candidate.predict(dataset.train[: min(size, 4)])
            batches = [heldout[start:start + size] for start in range(0, len(heldout), size)]
            held = _HeldOut(candidate, batches)
            # 1. the bake-off, with fresh answers, a held-out batch after each of its batches
            bake_started = time.monotonic()
            result = run_bakeoff(card, [arm], store=runs,
                                 options=BakeoffOptions(limit=args.sample, use_cache=False, seed=args.seed),
                                 load_backend=shared_backend, load_embedder=shared_embedder, observer=held)
            bakeoff_s = time.monotonic() - bake_started
            held.finish()  # batches left over when the held-out batch is larger than the sample
            # 2. the TCO's price of one request, read back from the store
            evidence = load_evidence(runs, result.run_id, card, reload_data=False).arm(arm.name)
            cost, _ = cost_input(evidence, card)
            seconds = evidence.steady_compute_s_per_request or 0.0
            row = ArmAccuracy(arm=arm.name, sample=evidence.n, heldout=len(heldout),
                              compute_ms_per_request=seconds * 1000, predicted_s=len(heldout) * seconds,
                              measured_s=held.seconds, predicted_usd=len(heldout) * cost.cost_per_request_usd,
                              measured_usd=held.seconds * price / 3600, bakeoff_s=bakeoff_s)
            results.append(row)
            # Per batch, in the order they ran (bake-off batch i, then held-out batch i): a steady
            # ratio means a bias in the prediction, a wandering one the machine's load.
            bake_batches = _batch_seconds(evidence.latencies_ms / 1000, size)
            print(f"    batch seconds, bake-off: {_seconds(bake_batches)}; held-out: {_seconds(held.batch_seconds)}")
            print(f"  {row.arm}: {row.compute_ms_per_request:,.0f} ms/request in the bake-off -> predicted "
                  f"{row.predicted_s:.2f} s (${row.predicted_usd:.6f}) for {row.heldout} requests; measured "
                  f"{row.measured_s:.2f} s (${row.measured_usd:.6f}); error {row.error:.1%} "
                  f"(bake-off {row.bakeoff_s:.0f} s; load {os.getloadavg()[0]:.1f})", flush=True)
    for backend in backends.values():
        backend._backend.close()

    print()
    print(f"{'arm':<42} {'ms/req':>8} {'predicted s':>12} {'measured s':>11} {'error':>7}")
    for row in results:
        print(f"{row.arm:<42} {row.compute_ms_per_request:>8,.0f} {row.predicted_s:>12.2f} {row.measured_s:>11.2f} "
              f"{row.error:>7.1%}")
    worst = max(results, key=lambda r: r.error)
    met = all(r.error <= TARGET for r in results)
    print(f"target: every arm within {TARGET:.0%}: {'met' if met else 'NOT met'}; "
          f"{time.monotonic() - started:.0f} s in all; load {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                         "arms": [asdict(r) | {"error": r.error} for r in results]}, indent=2))
    short = ", ".join(f"{r.arm.split('@')[0]} {r.error:.1%}" for r in results)
    print(f"worst error {worst.error:.1%} ({short})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
