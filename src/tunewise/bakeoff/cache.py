"""Identical calls are answered from the store, so re-running a bake-off is nearly free.

A call is identical when the arm, its settings, everything in the task that reaches a prompt
(kind, instruction, labels, schema), the data it learns from (file hashes), the embedding
model and the input are the same. Traffic and cost settings are left out on purpose: changing the expected volume
must not re-run the models. A cached answer keeps the latency, tokens and cost measured when
it was first computed, so the bake-off table is the same on a re-run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from tunewise.arms.base import Arm, Candidate, Prediction
from tunewise.models.base import Usage
from tunewise.store import Store
from tunewise.store.records import CachedCall
from tunewise.task.card import TaskCard
from tunewise.task.dataset import Dataset, Example

CACHE_FORMAT = 1  # bump when what a cached answer means changes


class CallCache:
    def __init__(self, store: Store, card: TaskCard, dataset: Dataset, *, embedder: str, enabled: bool = True):
        self.store = store
        self.enabled = enabled
        self.model_ids: dict[str, str] = {}  # arm name -> model id of the answers found in the cache
        self._task = {
            "kind": card.kind.value,
            "instruction": card.instruction,
            "labels": dataset.labels,
            "schema": card.schema_dict(),
            "data": dataset.data_hashes,
            "embedder": embedder,  # nearest-neighbour few-shot and the embedding classifier depend on it
        }

    def key(self, arm: Arm, example: Example) -> str:
        identity = {"format": CACHE_FORMAT, "arm": arm.name, "params": arm.params(), "task": self._task,
                    "input": example.input}
        text = json.dumps(identity, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def lookup(self, arm: Arm, examples: Sequence[Example]) -> dict[str, Prediction]:
        """Cached predictions, keyed by example input (empty when the cache is off)."""
        if not self.enabled or not examples:
            return {}
        keys = {self.key(arm, ex): ex.input for ex in examples}
        found = self.store.cached_calls(list(keys))
        hits: dict[str, Prediction] = {}
        for key, call in found.items():
            hits[keys[key]] = _prediction(call)
            self.model_ids[arm.name] = call.model_id
        return hits

    def save(self, arm: Arm, candidate: Candidate, examples: Sequence[Example], predictions: Sequence[Prediction]):
        """Remember fresh answers (always, even with the cache off for reading: a later run may use them)."""
        entries = [
            CachedCall(
                key=self.key(arm, ex), model_id=candidate.model_id,
                output={"output": p.output, "valid": p.valid, "raw": p.raw, "extra": _jsonable(p.extra)},
                tokens_in=p.usage.tokens_in, tokens_out=p.usage.tokens_out, latency_s=p.usage.latency_s,
                cost_usd=p.usage.cost_usd,
            )
            for ex, p in zip(examples, predictions)
        ]
        self.store.cache_calls(entries)


def _prediction(call: CachedCall) -> Prediction:
    doc = call.output
    usage = Usage(call.tokens_in, call.tokens_out, call.latency_s, call.cost_usd)
    return Prediction(output=doc["output"], usage=usage, valid=doc.get("valid", True), raw=doc.get("raw"),
                      extra=doc.get("extra") or {})


def _jsonable(extra: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(extra, default=float))
