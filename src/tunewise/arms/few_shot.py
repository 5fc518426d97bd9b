"""Few-shot prompting: k training examples as prior user / assistant turns, then the input.

Two arms, two ways of choosing the examples:

random   k examples drawn once (seeded) from the train split: the SAME examples for every
         input, so the whole prompt but the input is a shared prefix that a local backend
         computes once. Cheap, and the honest baseline for "do examples help at all".
nearest  per input, the k training examples whose inputs are most similar to it by embedding
         (cosine; the embedder's rows are L2-normalised). Only the instruction is shared; the
         examples differ per input, so each prompt costs its examples' tokens. The most similar
         example goes last, next to the input.

Prompts stay within ``max_prompt_tokens`` (instruction + examples, counted with the backend's
tokenizer; the input comes on top): each example input is cut to ``max_example_tokens``, and
examples are dropped, least preferred first, until the rest fit (a 150-label classify task
spends ~700 tokens of the budget on its label list alone). The number that
fitted is recorded (``k_used`` in the config for random; for nearest, each prediction's
``extra["examples"]``, as file:line).
"""

from __future__ import annotations

import dataclasses
import functools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tunewise.arms.answers import AnswerPlan, answer_batch
from tunewise.arms.base import Arm, ArmContext, Candidate, Prediction
from tunewise.arms.prompts import (
    CountTokens,
    example_ref,
    example_turns,
    fit_examples,
    shared_prefix,
    shorten_example,
    task_brief,
    with_input,
)
from tunewise.arms.zero_shot import PromptCandidate, base_config, labels_missing
from tunewise.errors import TunewiseError
from tunewise.models.base import Backend, Chat, Usage
from tunewise.task.dataset import Dataset, Example

if TYPE_CHECKING:
    from tunewise.knowledge.embed import Embedder

Selection = Literal["random", "nearest"]
SELECTIONS: tuple[str, ...] = ("random", "nearest")
DEFAULT_K = 5


@dataclass
class FewShot(Arm):
    """Few-shot prompting of ``model`` with ``k`` examples chosen by ``selection``."""

    model: str
    k: int = DEFAULT_K
    selection: Selection = "random"
    seed: int | None = None  # None: the bake-off's seed (ArmContext.seed)
    max_prompt_tokens: int = 2048  # instruction + examples; the input comes on top
    max_example_tokens: int = 256  # one example's input is cut to this

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise TunewiseError(
                f"unknown few-shot selection {self.selection!r}", where="FewShot.selection",
                fix=f"use one of {', '.join(SELECTIONS)}",
            )
        for name in ("k", "max_prompt_tokens", "max_example_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TunewiseError(f"{name} must be a positive integer, got {value!r}", where=f"FewShot.{name}",
                                    fix=f"set {name} to 1 or more")

    @property
    def name(self) -> str:  # type: ignore[override]
        # k shows in the name only when it is not the default, so one bake-off can hold both.
        k = "" if self.k == DEFAULT_K else f"_k{self.k}"
        return f"few_shot_{self.selection}{k}@{self.model}"

    def applies(self, dataset: Dataset) -> str | None:
        if len(dataset.train) < self.k:
            return f"few-shot with k={self.k} needs at least {self.k} training examples, the task has {len(dataset.train)}"
        return labels_missing(dataset)

    def prepare(self, context: ArmContext) -> Candidate:
        reason = self.applies(context.dataset)
        if reason:
            raise TunewiseError(reason, where=self.name, fix="add training examples or lower k")
        dataset = context.dataset
        backend = context.backend(self.model)
        plan = AnswerPlan.for_dataset(dataset, backend.count_tokens)
        brief = task_brief(dataset.card, labels=plan.labels, schema=plan.schema)
        seed = context.seed if self.seed is None else self.seed
        config = {
            **base_config(f"few_shot_{self.selection}", self.model, plan),
            "selection": self.selection,
            "k": self.k,
            "seed": seed,
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_example_tokens": self.max_example_tokens,
        }
        budget = self.max_prompt_tokens - backend.count_tokens(brief)
        if self.selection == "random":
            return self._random(backend, plan, brief, config, dataset.train, seed, budget)
        return self._nearest(context, backend, plan, brief, config, budget)

    def _random(self, backend: Backend, plan: AnswerPlan, brief: str, config: dict[str, Any],
                train: list[Example], seed: int, budget: int) -> Candidate:
        picked = random.Random(seed).sample(train, self.k)
        shortened = [shorten_example(e, self.max_example_tokens, backend.count_tokens) for e in picked]
        examples = fit_examples(shortened, budget, backend.count_tokens)
        config |= {"examples": [example_ref(e) for e in examples], "k_used": len(examples)}
        return PromptCandidate(backend, plan, shared_prefix(brief, examples), config)

    def _nearest(self, context: ArmContext, backend: Backend, plan: AnswerPlan, brief: str,
                 config: dict[str, Any], budget: int) -> Candidate:
        embedder = context.embedder()
        train = context.dataset.train
        began = time.perf_counter()
        vectors = np.asarray(embedder.encode([e.input for e in train]), dtype=np.float32)
        seconds = time.perf_counter() - began
        config["embedder"] = embedder.model_id
        candidate = NearestCandidate(
            backend, plan, shared_prefix(brief), config,
            embedder=embedder, train=train, train_vectors=vectors, k=self.k,
            budget_tokens=budget, max_example_tokens=self.max_example_tokens,
        )
        # Embedding the train split is the one-time cost; the embedder reports no price, so
        # only its time is recorded (the verdict prices machine time).
        candidate.prepare_usage = Usage(tokens_in=0, tokens_out=0, latency_s=seconds, cost_usd=0.0)
        return candidate


class NearestCandidate(PromptCandidate):
    """The instruction as the shared prefix, then each input's own nearest training examples."""

    def __init__(self, backend: Backend, plan: AnswerPlan, prefix: Chat, config: dict[str, Any], *,
                 embedder: Embedder, train: Sequence[Example], train_vectors: np.ndarray, k: int,
                 budget_tokens: int, max_example_tokens: int):
        super().__init__(backend, plan, prefix, config)
        self.embedder = embedder
        self.train = list(train)
        self.train_vectors = train_vectors
        self.k = k
        self.budget_tokens = budget_tokens
        self.max_example_tokens = max_example_tokens
        # The same training examples come up again and again: count each text once.
        self._count: CountTokens = functools.lru_cache(maxsize=65536)(backend.count_tokens)

    def nearest(self, vectors: np.ndarray) -> list[list[int]]:
        """Per query row, the indices of the k most similar training examples, most similar first
        (ties: the earlier training example, so selection is deterministic)."""
        similarity = vectors @ self.train_vectors.T
        return [np.argsort(-row, kind="stable")[: self.k].tolist() for row in similarity]

    def examples_for(self, indices: Sequence[int]) -> list[Example]:
        """The examples as they go into the prompt: cut to the budget, the most similar last."""
        shortened = [shorten_example(self.train[i], self.max_example_tokens, self._count) for i in indices]
        return fit_examples(shortened, self.budget_tokens, self._count)[::-1]

    def select(self, batch: Sequence[Example]) -> list[list[Example]]:
        """Each input's examples, in prompt order."""
        # Past the cache: in service every request is new text, so its embedding time belongs
        # in the measured latency even when a run has seen the text before.
        texts = [example.input for example in batch]
        vectors = np.asarray(self.embedder.encode(texts, use_cache=False), dtype=np.float32)
        return [self.examples_for(indices) for indices in self.nearest(vectors)]

    def prompts(self, batch: Sequence[Example]) -> list[Chat]:
        return self._prompts(batch, self.select(batch))

    def _prompts(self, batch: Sequence[Example], chosen: Sequence[Sequence[Example]]) -> list[Chat]:
        return [with_input((*self.prefix, *example_turns(examples)), example.input)
                for examples, example in zip(chosen, batch)]

    def predict(self, batch: Sequence[Example]) -> list[Prediction]:
        if not batch:
            return []
        began = time.perf_counter()
        chosen = self.select(batch)
        selection_share = (time.perf_counter() - began) / len(batch)
        predictions = answer_batch(self.backend, self._prompts(batch, chosen), self.plan)
        # Embedding the input and picking its examples is part of answering it: into the latency.
        return [
            dataclasses.replace(
                prediction,
                usage=dataclasses.replace(prediction.usage, latency_s=prediction.usage.latency_s + selection_share),
                extra={**prediction.extra, "examples": [example_ref(e) for e in examples]},
            )
            for prediction, examples in zip(predictions, chosen)
        ]
