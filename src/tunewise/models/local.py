"""A model run in this process with PyTorch + transformers: the local arms' backend.

CPU by default, CUDA when present (bf16 there). ``generate`` batches prompts, takes the
batch's shared prompt start from the same cached prefix KV as scoring (SmolLM2 on SNIPS: the
same text 2.5x faster) and pads the rest on the left. ``score_options`` is the classification
hot path (see option_scoring): by default it finds each prompt's best option exactly by a
best-first search over the option trie and gives the options it never had to finish an upper
bound (``BoundedOptionScores``); ``exact=True`` scores every option in full. Cost is what the
machine costs while it computes: measured seconds x a price per hour, each request carrying an
equal share of its batch's time.
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    GenerationConfig,
    LogitsProcessorList,
    StoppingCriteriaList,
)

from tunewise.errors import TunewiseError
from tunewise.hub import cache_first
from tunewise.models.base import (
    Backend,
    Chat,
    GenerateOptions,
    Generation,
    OptionScores,
    Usage,
)
from tunewise.models.catalog import (
    CATALOG,
    Kind,
    ResolvedModel,
    models_dir,
    resolve_model,
)
from tunewise.models.device import pick_device, pick_dtype
from tunewise.models.gguf_cache import cache_problems, read_manifest
from tunewise.models.json_stop import (
    JsonObjectEnd,
    JsonStart,
    object_end,
    object_start_ids,
)
from tunewise.models.option_scoring import (
    OptionTrie,
    PrefixTrieScorer,
    common_prefix_length,
    score_naive,
)
from tunewise.models.prompt_format import AnswerAffixes, PromptFormat

MIN_SHARED_PREFIX = 16
"""Shorter shared prompt starts are prefilled with the rest: a cache look-up would save nothing."""

DEFAULT_PRICE_PER_HOUR = 0.10
"""Dollars per hour of the machine a local model runs on (a small cloud CPU instance)."""


@dataclass(frozen=True, slots=True)
class BoundedOptionScores(OptionScores):
    """Option scores where some options may carry an upper bound instead of their log-prob.

    ``exact[i]`` says whether ``logprobs[i]`` is the option's log-prob. A bound is always
    below the best option's exact log-prob, so ``best`` is the exact argmax, and a softmax over
    ``logprobs`` under-states the best option's share: a lower bound of its exact confidence.
    """

    exact: tuple[bool, ...] = ()

    @property
    def all_exact(self) -> bool:
        return all(self.exact)


class LocalBackend(Backend):
    """A causal LM and its tokenizer, already loaded (``LocalBackend.load`` loads by spec)."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        name: str,
        kind: Kind | None = None,
        fingerprint: str | None = None,
        price_per_hour: float = DEFAULT_PRICE_PER_HOUR,
        max_batch_size: int = 16,
        max_batch_tokens: int = 4096,
        reuse_prefix: bool = True,
        exact_scores: bool = False,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.kind: Kind = kind or ("instruct" if getattr(tokenizer, "chat_template", None) else "base")
        self.model_id = f"local:{name}@{fingerprint[:12]}" if fingerprint else f"local:{name}"
        self.price_per_hour = price_per_hour
        self.max_batch_size = max_batch_size
        # Label scoring gains from large batches: one best-first search over more prompts reads
        # the shared prefix once a round for all of them (CLINC150 zero-shot, SmolLM2, 2 cores:
        # 1.50 ex/s in batches of 16, 1.85 of 48, 2.20 of 96); generation batches stay small.
        self.batch_sizes = {"score": 64, "generate": max_batch_size}
        self.reuse_prefix = reuse_prefix
        #: Score every option in full by default (else: the exact best, bounds for the rest).
        self.exact_scores = exact_scores
        self.format = PromptFormat(tokenizer, chat=self.kind == "instruct")
        self.scorer = PrefixTrieScorer(model, max_batch_tokens=max_batch_tokens)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._stop_ids = self._end_token_ids()
        self._tries: dict[tuple[AnswerAffixes, tuple[str, ...]], tuple[OptionTrie, list[list[int]]]] = {}
        self._weights_version = self._current_weights_version()

    @classmethod
    def load(
        cls,
        spec: str | ResolvedModel,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        price_per_hour: float = DEFAULT_PRICE_PER_HOUR,
        progress: Callable[[str], None] | None = None,
        **options,
    ) -> LocalBackend:
        """Load a catalog name, a local model folder or a hub id (see catalog.resolve_model)."""
        target = pick_device(device)
        precision = pick_dtype(target, dtype)
        if isinstance(spec, str) and spec in CATALOG:
            resolved, (model, tokenizer) = _load_catalog_model(spec, target, precision, progress)
        else:
            resolved = spec if isinstance(spec, ResolvedModel) else resolve_model(spec, progress=progress)
            model, tokenizer = _from_pretrained(resolved, target, precision)
        fingerprint = resolved.fingerprint or _hub_revision(resolved)
        return cls(
            model,
            tokenizer,
            name=resolved.name,
            kind=resolved.kind,
            fingerprint=fingerprint,
            price_per_hour=price_per_hour,
            **options,
        )

    # -- Backend ------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Chat], options: GenerateOptions | None = None) -> list[Generation]:
        """Greedy by default.

        An instruct model stops at its end-of-turn token; a base model at the end of an answer
        as prompt_format defines it (the end of the line after one message, else a blank line).
        ``json_mode``: the answer's first token starts with ``{`` and the answer ends where that
        object closes (see json_stop); what is inside is the model's, and the arms validate it.
        """
        options = options or GenerateOptions()
        texts = [self.format.text(p) for p in prompts]
        encoded = [self.format.tokenize(t) for t in texts]
        results: list[Generation | None] = [None] * len(prompts)
        groups: dict[AnswerAffixes, list[int]] = {}  # a batch shares its stop markers
        for i, prompt in enumerate(prompts):
            groups.setdefault(self.format.affixes(prompt), []).append(i)
        for affixes, members in groups.items():
            order = sorted(members, key=lambda i: len(encoded[i]))  # similar lengths: less padding
            for start in range(0, len(order), self.max_batch_size):
                batch = order[start : start + self.max_batch_size]
                began = time.perf_counter()
                outputs = self._generate_batch([encoded[i] for i in batch], options, affixes)
                share = (time.perf_counter() - began) / len(batch)
                for index, (text, n_out, finish) in zip(batch, outputs):
                    usage = Usage(len(encoded[index]), n_out, share, self._cost(share))
                    results[index] = Generation(text=text, usage=usage, finish_reason=finish)
        return results  # type: ignore[return-value]

    def score_options(
        self, prompts: Sequence[Chat], options: Sequence[str], *, exact: bool | None = None
    ) -> list[BoundedOptionScores]:
        """Log-probs of every option after every prompt; ``exact`` (default: ``exact_scores``)
        scores all in full, else only as far as finding each prompt's best option needs."""
        exact = self.exact_scores if exact is None else exact
        if not options:
            raise TunewiseError("score_options needs at least one option", where="options", fix="pass the labels")
        began = time.perf_counter()
        texts = [self.format.text(p) for p in prompts]
        encoded = [self.format.tokenize(t) for t in texts]
        self._drop_caches_if_weights_changed()
        scores = torch.zeros(len(prompts), len(options), dtype=torch.float64)
        complete = torch.ones(len(prompts), len(options), dtype=torch.bool)
        # A base model's answer starts and ends differently after a text to continue than after
        # paragraphs (see prompt_format), so option tokens differ: one trie per kind of prompt.
        groups: dict[AnswerAffixes, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(self.format.affixes(prompt), []).append(i)
        for affixes, members in groups.items():
            trie, option_ids = self._trie(affixes, tuple(options))
            member_ids = [encoded[i] for i in members]
            if not self.scorer.supported:
                scores[members] = score_naive(self.model, member_ids, option_ids, pad_id=self._pad_id)
            elif exact:
                scores[members] = self.scorer.score(member_ids, trie, reuse_prefix=self.reuse_prefix)
            else:
                block, done = self.scorer.score_best_first(member_ids, trie, reuse_prefix=self.reuse_prefix)
                scores[members], complete[members] = block, done
        share = (time.perf_counter() - began) / max(1, len(prompts))
        return [
            BoundedOptionScores(
                tuple(scores[i].tolist()),
                Usage(len(encoded[i]), 0, share, self._cost(share)),
                exact=tuple(complete[i].tolist()),
            )
            for i in range(len(prompts))
        ]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def close(self) -> None:
        self.scorer.forget_prefix()
        self._tries.clear()
        self.model = None  # type: ignore[assignment]
        self.scorer = None  # type: ignore[assignment]
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- helpers ------------------------------------------------------------------------------

    def option_token_ids(self, options: Sequence[str], *, prompt: Chat) -> list[list[int]]:
        """The tokens scored for each option after ``prompt``: its text and the answer's end marker."""
        affixes = self.format.affixes(prompt)
        return [self.format.answer_ids(option, affixes) for option in options]

    @torch.inference_mode()
    def _generate_batch(
        self, batch: list[list[int]], options: GenerateOptions, affixes: AnswerAffixes
    ) -> list[tuple[str, int, str]]:
        device = self.model.device
        stops = tuple(options.stop) if self.format.chat else (*options.stop, affixes.end)
        shared = self._generation_prefix_length(batch)
        past = self.scorer._prefix_kv(tuple(batch[0][:shared])) if shared else []
        suffix_width = max(len(ids) for ids in batch) - shared
        width = shared + suffix_width
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros(len(batch), width, dtype=torch.long)
        if shared:
            input_ids[:, :shared] = torch.tensor(batch[0][:shared], dtype=torch.long)
            attention[:, :shared] = 1
        for row, ids in enumerate(batch):  # padding before each row's own part: its next token is at the end
            input_ids[row, width - len(ids) + shared :] = torch.tensor(ids[shared:], dtype=torch.long)
            attention[row, width - len(ids) + shared :] = 1
        # The shared prefix's cached KV, one view per row: generation only runs the rest.
        cache = DynamicCache([(k.expand(len(batch), -1, -1, -1), v.expand(len(batch), -1, -1, -1)) for k, v in past])
        sampling = options.temperature > 0
        config = GenerationConfig(
            max_new_tokens=options.max_new_tokens,
            do_sample=sampling,
            temperature=options.temperature if sampling else None,
            top_p=None,
            top_k=None,
            eos_token_id=sorted(self._stop_ids),
            pad_token_id=self._pad_id,
            stop_strings=list(stops) or None,
        )
        if sampling:
            torch.manual_seed(options.seed)
        json_mode = options.json_mode
        output = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            past_key_values=cache if past else None,
            generation_config=config,
            tokenizer=self.tokenizer,
            logits_processor=LogitsProcessorList([JsonStart(self._json_start_ids, width)]) if json_mode else None,
            stopping_criteria=StoppingCriteriaList([JsonObjectEnd(self.tokenizer, width)]) if json_mode else None,
        )
        results = []
        for row in output[:, width:].tolist():
            n_out = next((i + 1 for i, t in enumerate(row) if t in self._stop_ids), None)
            ended = n_out is not None
            if n_out is None:  # finished by a stop string (then padded) or by the length limit
                n_out = next((i for i, t in enumerate(row) if t == self._pad_id), len(row))
            text = self.tokenizer.decode(row[:n_out], skip_special_tokens=True)
            if not self.format.chat:
                text = text.removeprefix(affixes.lead)
            cuts = [text.find(s) for s in stops if s in text]
            closed = object_end(text) if options.json_mode else None
            if closed is not None:
                cuts.append(closed)
            if cuts:
                text, ended = text[: min(cuts)], True
            finish = "stop" if ended or n_out < options.max_new_tokens else "length"
            results.append((text, n_out, finish))
        return results

    @functools.cached_property
    def _json_start_ids(self) -> list[int]:
        return object_start_ids(self.tokenizer)  # a pass over the vocabulary: once per backend

    def _generation_prefix_length(self, batch: list[list[int]]) -> int:
        """How many leading tokens of a generation batch come from the cached prefix KV (0: none).

        The batch's prompts share the instruction (a JSON Schema, a label list, few-shot
        examples): computing it once instead of once per row is most of a batch's prefill.
        The padding then sits between the shared part and each row's own, which the attention
        mask hides and the position ids skip (they count unmasked tokens), but which a sliding
        window would count as distance: models with sliding-window layers keep left padding.
        """
        layers = self.scorer._layer_types
        if not self.reuse_prefix or not self.scorer.supported or (layers and "sliding_attention" in layers):
            return 0
        self._drop_caches_if_weights_changed()
        shared = min(common_prefix_length(batch), min(len(ids) for ids in batch) - 1)
        return shared if shared >= MIN_SHARED_PREFIX else 0

    def _trie(self, affixes: AnswerAffixes, options: tuple[str, ...]) -> tuple[OptionTrie, list[list[int]]]:
        key = (affixes, options)
        if key not in self._tries:
            if len(self._tries) >= 8:
                self._tries.pop(next(iter(self._tries)))
            option_ids = [self.format.answer_ids(option, affixes) for option in options]
            self._tries[key] = (OptionTrie.build(option_ids), option_ids)
        return self._tries[key]

    def _end_token_ids(self) -> set[int]:
        """Tokens that end an answer: EOS, the model's own stop tokens, and the end-of-turn marker."""
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(configured if isinstance(configured, list) else [configured])
        if self.format.chat:
            marker = self.tokenizer(self.format.affixes(()).end, add_special_tokens=False)["input_ids"]
            if len(marker) == 1:
                ids.add(marker[0])
        return {i for i in ids if i is not None}

    def _cost(self, seconds: float) -> float:
        return seconds * self.price_per_hour / 3600.0

    def _current_weights_version(self) -> int:
        # In-place updates (an optimizer step, a merged adapter) bump a tensor's version counter.
        return sum(p._version for p in self.model.parameters())

    def _drop_caches_if_weights_changed(self) -> None:
        version = self._current_weights_version()
        if version != self._weights_version:
            self.scorer.forget_prefix()  # the cached prefix KV was computed with the old weights
            self._weights_version = version


def _load_catalog_model(name: str, device: torch.device, dtype: torch.dtype, progress):
    """Load a cached catalog model while its files are hashed, rebuilding it if they fail.

    Hashing 540 MB takes ~0.4 s and loading ~2.5 s (mostly imports): side by side, on the
    second core (hashlib releases the GIL), a warm load costs the loading alone.
    """
    folder = models_dir() / name
    if read_manifest(folder) is None:  # never built: pull builds it, then load as usual
        resolved = resolve_model(name, progress=progress)
        return resolved, _from_pretrained(resolved, device, dtype)
    manifest = read_manifest(folder) or {}
    unverified = ResolvedModel(
        spec=name,
        name=name,
        source="catalog",
        location=str(folder),
        kind=CATALOG[name].kind,
        fingerprint=manifest.get("files", {}).get("model.safetensors"),
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        check = pool.submit(cache_problems, folder, CATALOG[name].source)
        try:
            loaded: tuple | TunewiseError = _from_pretrained(unverified, device, dtype)
        except TunewiseError as error:  # damaged files may not even load: the check says why
            loaded = error
        problems = check.result()
    if not problems:
        if isinstance(loaded, TunewiseError):
            raise loaded
        return unverified, loaded
    resolved = resolve_model(name, progress=progress)  # reports the damage and rebuilds
    return resolved, _from_pretrained(resolved, device, dtype)


def _from_pretrained(resolved: ResolvedModel, device: torch.device, dtype: torch.dtype):
    try:
        if resolved.source != "hub":
            model, tokenizer = _load_files(resolved.location, dtype)
        else:
            model, tokenizer = _load_from_hub(resolved, dtype)
    except TunewiseError:
        raise
    except Exception as error:
        raise _load_error(resolved, error) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def _load_files(location: str, dtype: torch.dtype, **hub_options):
    tokenizer = AutoTokenizer.from_pretrained(location, **hub_options)
    # The PEFT adapter look-up takes its own hub options: without them it asks the hub even
    # with local_files_only, and an unreachable hub costs ~25 s of retries.
    adapter = {"adapter_kwargs": dict(hub_options)} if hub_options else {}
    model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **hub_options, **adapter)
    return model, tokenizer


def _load_from_hub(resolved: ResolvedModel, dtype: torch.dtype):
    """The hub cache first, then the hub (see tunewise.hub.cache_first)."""
    options = {"cache_dir": resolved.hub_cache_dir} if resolved.hub_cache_dir else {}
    return cache_first(lambda **hub_options: _load_files(resolved.location, dtype, **options, **hub_options))


def _load_error(resolved: ResolvedModel, error: Exception) -> TunewiseError:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    if resolved.source == "hub":
        return TunewiseError(
            f"could not load hub model {resolved.location!r}: {reason}",
            where=resolved.location,
            fix=(
                "on a machine with hub access run it once (then HF_HUB_OFFLINE=1 uses the cached copy), "
                "or download the model elsewhere and give its local folder, "
                "or use a catalog model: smollm2-135m-instruct"
            ),
        )
    return TunewiseError(
        f"could not load the model folder: {reason}",
        where=resolved.location,
        fix="check that it was written by save_pretrained() for a causal LM, with its tokenizer",
    )


def _hub_revision(resolved: ResolvedModel) -> str | None:
    """The commit of the hub snapshot that was loaded (its cache folder's name), if any."""
    if resolved.source != "hub":
        return None
    from transformers.utils import cached_file

    try:
        config = cached_file(
            resolved.location, "config.json", cache_dir=resolved.hub_cache_dir, local_files_only=True
        )
    except Exception:  # noqa: BLE001 - a missing revision only shortens the model id
        return None
    parent = Path(config).parent if config else None
    return parent.name if parent is not None and parent.parent.name == "snapshots" else None
