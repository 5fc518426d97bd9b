"""Throughput of tunewise's prompting arms on CLINC150 against plain per-example loops.

One process, one seeded sample of the CLINC150 test split, smollm2-135m-instruct, for each
arm (zero-shot, few-shot random) and each dtype:

(a) plain generate loop  per example: the same chat tunewise's prompts module builds, rendered
                         with the tokenizer's chat template, greedy ``generate`` with
                         max_new_tokens = the longest label (+ its end-of-turn token), the
                         text mapped to a label by exact, else case-insensitive, match (else
                         wrong). What a user would write without tunewise; the speed floor.
(b) tunewise             the arm's real ``prepare`` / ``predict`` (LocalBackend.score_options:
                         shared-prefix KV reuse, then a best-first search over the label trie
                         that scores the best label exactly and stops each other label as
                         soon as it cannot win), in the arm's own batch size (the
                         bake-off's: 64 for local label scoring; --quick runs one batch of 16).
(c) plain naive scoring  per example: one forward pass over the batch of (prompt + label)
                         sequences, all 151, no prefix reuse, written here from the chat
                         template alone. It scores what (b) scores, so (b)'s predictions must
                         EQUAL it: the correctness check (and (b)'s exact mode, every label in
                         full, must match its scores). Slow (151 x ~700 tokens per example), so
                         it runs on the first few examples of the sample.
(d) lm-evaluation-harness, if installed: the same subset as a custom multiple-choice task
                         (choices = the labels, each followed by the end-of-turn marker, as
                         tunewise scores them), model loaded from the local cache folder,
                         offline. If it cannot run, the reason is printed, not a figure.

(a) and (b) differ by design (free generation vs constrained label scoring), so their
predictions are not expected to agree; (b) against (c) is the exactness check, and the
ratio (b) / (a) is the speed-up the issue asks for. The last line printed is the key figure.

Data: CLINC150, Larson et al., "An Evaluation Dataset for Intent Classification and
Out-of-Scope Prediction", EMNLP 2019 (github: clinc/oos-eval), CC BY 3.0.

    python benchmarks/eval_throughput.py --quick
    python benchmarks/eval_throughput.py --limit 300 --plain-seconds 150
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from _clinc150 import ATTRIBUTION, DATA, INSTRUCTION
from _machine import machine

MODEL = "smollm2-135m-instruct"
ARMS = ("zero_shot", "few_shot")


# -- setup --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small N (16 for tunewise, 1 for the generate loop, a 2-label check "
                        "instead of the full naive loop, no lm-eval, fp32 only): about a minute on an idle "
                        "2-core machine")
    p.add_argument("--limit", type=int, help="test examples for tunewise, per arm (default 300; quick 16)")
    p.add_argument("--plain-limit", type=int,
                   help="at most this many examples for the plain generate loop (default: time-boxed)")
    p.add_argument("--plain-seconds", type=float, default=150.0,
                   help="time box for the plain generate loop, per arm and dtype (at least 2 examples)")
    p.add_argument("--naive-limit", type=int, help="examples for the naive scoring check, per arm (default 2; quick 0)")
    p.add_argument("--naive-labels", type=int, default=8,
                   help="with --naive-limit 0: a partial check on 1 example against this many labels "
                        "(tunewise's top half, the rest random)")
    p.add_argument("--lmeval-limit", type=int, help="examples for lm-eval, per arm (default: --naive-limit; quick 0)")
    p.add_argument("--lmeval-batch-size", type=int, default=4)
    p.add_argument("--arms", default=",".join(ARMS), help="comma list of zero_shot, few_shot")
    p.add_argument("--dtype", help="comma list of fp32, bf16; the first one also runs (c) and (d) "
                                   "(default fp32,bf16; quick fp32)")
    p.add_argument("--seed", type=int, default=0, help="seeds the test sample and the few-shot examples")
    p.add_argument("--threads", type=int, help="torch threads for every peer (default: torch's, one per core)")
    p.add_argument("--json", type=Path, help="also write every figure here")
    args = p.parse_args(argv)
    # --quick must finish in about 2 minutes on 2 shared cores: one batch per arm (16: the
    # shared prefix, computed once per arm inside the timing, weighs on fewer), one plain
    # example, a 2-label exactness check (the best label and one other).
    args.limit = args.limit if args.limit is not None else (16 if args.quick else 300)
    if args.quick:
        args.plain_limit = 1 if args.plain_limit is None else args.plain_limit
        args.naive_labels = min(args.naive_labels, 2)
    args.naive_limit = args.naive_limit if args.naive_limit is not None else (0 if args.quick else 2)
    args.lmeval_limit = args.lmeval_limit if args.lmeval_limit is not None else (0 if args.quick else args.naive_limit)
    args.dtype = [d.strip() for d in (args.dtype or ("fp32" if args.quick else "fp32,bf16")).split(",") if d.strip()]
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    for arm in args.arms:
        if arm not in ARMS:
            p.error(f"unknown arm {arm!r}: use {', '.join(ARMS)}")
    for dtype in args.dtype:
        if dtype not in ("fp32", "bf16"):
            p.error(f"unknown dtype {dtype!r}: use fp32 or bf16")
    return args


def clinc_dataset(home: Path):
    import yaml

    from tunewise.task.card import load_card
    from tunewise.task.load import load_task

    folder = home / "bench" / "clinc150"
    folder.mkdir(parents=True, exist_ok=True)
    card = {"name": "clinc150", "kind": "classify", "instruction": INSTRUCTION,
            "data": {split: str(DATA / f"{split}.jsonl") for split in ("train", "validation", "test")}}
    (folder / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
    return load_task(load_card(folder / "card.yaml"))


# -- the peers ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One peer on one arm: its predictions, in sample order, and its wall time."""

    peer: str
    arm: str
    dtype: str
    predictions: list[str | None]
    seconds: float
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.predictions)

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else math.nan

    def accuracy(self, gold: Sequence[str]) -> float:
        return sum(p == g for p, g in zip(self.predictions, gold)) / self.n if self.n else math.nan


def messages(chat) -> list[dict]:
    return [{"role": m.role, "content": m.content} for m in chat]


class TunewiseRunner:
    """The arm's real predict, in the bake-off's batch size; the shared prefix is computed inside the timing."""

    def __init__(self, candidate, warmup_example):
        self.candidate = candidate
        self.step = candidate.batch_size()
        candidate.predict([warmup_example])  # warm-up (allocator, kernels) on an example outside the sample ...
        scorer = getattr(candidate.backend, "scorer", None)
        if scorer is not None and hasattr(scorer, "forget_prefix"):
            scorer.forget_prefix()  # ... but the shared prefix is computed again, inside the timing
        self.outputs: list[str | None] = []
        self.bounded: list[int] = []  # per example, the labels the search never had to finish
        self.seconds = 0.0

    def run(self, batch) -> None:
        began = time.perf_counter()
        predictions = self.candidate.predict(batch)
        self.seconds += time.perf_counter() - began
        self.outputs += [p.output for p in predictions]
        self.bounded += [p.extra.get("bounded_labels", 0) for p in predictions]


def label_matcher(labels: Sequence[str]):
    exact = set(labels)
    folded = {label.casefold(): label for label in labels}

    def match(text: str) -> str | None:
        text = text.strip()
        return text if text in exact else folded.get(text.casefold())

    return match


class PlainGenerateRunner:
    """Per example: render, tokenize, greedy generate, map the text to a label."""

    def __init__(self, model, tokenizer, labels, warmup_chat):
        from transformers import GenerationConfig

        self.model, self.tokenizer = model, tokenizer
        end_id = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
        self.max_new_tokens = 1 + max(len(tokenizer(label, add_special_tokens=False)["input_ids"]) for label in labels)
        self.config = GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False, eos_token_id=end_id,
                                       pad_token_id=tokenizer.pad_token_id or end_id)
        self.match = label_matcher(labels)
        self.outputs: list[str | None] = []
        self.texts: list[str] = []
        self.seconds = 0.0
        self._one(warmup_chat)  # a short chat: it warms the same code path, for a fraction of the time

    def _one(self, chat) -> tuple[str | None, str]:
        import torch

        encoded = self.tokenizer.apply_chat_template(messages(chat), add_generation_prompt=True,
                                                     return_dict=True, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.generate(**encoded, generation_config=self.config)
        text = self.tokenizer.decode(out[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
        return self.match(text), text

    def run(self, chat) -> None:
        began = time.perf_counter()
        label, text = self._one(chat)
        self.seconds += time.perf_counter() - began
        self.outputs.append(label)
        self.texts.append(text)


def interleaved(tw: TunewiseRunner, pg: PlainGenerateRunner, examples, chats, *, plain_limit: int | None,
                plain_seconds: float) -> None:
    """Both peers, alternating: after each tunewise batch, plain examples up to its share of the
    plain budget so far. On a machine other jobs load unevenly, both then see the same load."""
    batches = [examples[i : i + tw.step] for i in range(0, len(examples), tw.step)]
    cap = len(chats) if plain_limit is None else min(plain_limit, len(chats))
    for done, batch in enumerate(batches, 1):
        tw.run(batch)
        share = done / len(batches)
        while len(pg.outputs) < cap:
            if plain_limit is not None and len(pg.outputs) >= math.ceil(cap * share):
                break
            if plain_limit is None and pg.seconds >= plain_seconds * share and len(pg.outputs) >= 2 * share:
                break
            pg.run(chats[len(pg.outputs)])
    while plain_limit is None and len(pg.outputs) < min(2, cap):
        pg.run(chats[len(pg.outputs)])


def answer_ids(tokenizer, chat, label: str, prompt_ids: list[int]) -> list[int]:
    """The label as a complete assistant turn, from the chat template alone: its text up to and
    including the end-of-turn token, as the tokens that follow the prompt's."""
    prompt = tokenizer.apply_chat_template(messages(chat), add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template([*messages(chat), {"role": "assistant", "content": label}], tokenize=False)
    assert full.startswith(prompt), "the template does not extend the prompt with the answer"
    answer = full[len(prompt):]
    answer = answer[: answer.index(tokenizer.eos_token) + len(tokenizer.eos_token)]
    ids = tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids, "prompt tokens change when the answer follows"
    return ids[len(prompt_ids):]


def naive_scores(model, tokenizer, chat, labels: Sequence[str], max_batch_tokens: int = 8192):
    """log p(label turn | prompt) for each label: full forward passes over (prompt + label), no reuse."""
    import torch

    prompt_ids = tokenizer.apply_chat_template(messages(chat), add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt_ids, add_special_tokens=False)["input_ids"]
    answers = [answer_ids(tokenizer, chat, label, prompt_ids) for label in labels]
    scores = torch.empty(len(labels), dtype=torch.float64)
    step = max(1, max_batch_tokens // (len(prompt_ids) + max(map(len, answers))))
    pad = tokenizer.pad_token_id or 0
    for start in range(0, len(labels), step):
        chunk = answers[start : start + step]
        width = len(prompt_ids) + max(map(len, chunk))
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, answer in enumerate(chunk):  # right padding: every answer starts at the same column
            seq = prompt_ids + answer
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        # Logits only where they predict answer tokens (the whole forward pass still runs): all
        # 700 positions x 49k vocabulary would be GBs per batch.
        keep = torch.arange(len(prompt_ids) - 1, width - 1)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        for row, answer in enumerate(chunk):
            picked = logprobs[row, torch.arange(len(answer)), torch.tensor(answer)]
            scores[start + row] = picked.double().sum()
    return scores


def run_naive(model, tokenizer, chats, labels, arm: str, dtype: str) -> tuple[Run, list]:
    outputs, all_scores = [], []
    began = time.perf_counter()
    for chat in chats:
        scores = naive_scores(model, tokenizer, chat, labels)
        all_scores.append(scores)
        outputs.append(labels[int(scores.argmax())])
    return Run("plain naive label scoring", arm, dtype, outputs, time.perf_counter() - began,
               f"{len(labels)} full passes per example"), all_scores


def run_lmeval(folder: Path, dtype: str, tokenizer, chats, gold, labels, arm: str, batch_size: int):
    """lm-eval's HFLM on a custom multiple-choice task from a local JSONL.

    (Run, per-example loglikelihoods of every choice), or (None, why it could not run).
    lm-eval moves the prompt's trailing newline into each continuation, so its scores are
    tunewise's plus log p(newline | prompt): the same for every label of an example.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import lm_eval
        from lm_eval.evaluator import evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager, get_task_dict
    except ImportError as error:
        return None, f"lm_eval is not installed ({error}): pip install lm_eval"
    work = Path(tempfile.mkdtemp(prefix="tw-lmeval-"))
    os.environ.setdefault("HF_DATASETS_CACHE", str(work / "hf-datasets"))
    data = work / f"clinc150-{arm}.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for chat, answer in zip(chats, gold):
            context = tokenizer.apply_chat_template(messages(chat), add_generation_prompt=True, tokenize=False)
            f.write(json.dumps({"context": context, "gold": labels.index(answer)}) + "\n")
    end = tokenizer.eos_token  # scored as part of each choice, as tunewise does ("cancel" vs "cancel_reservation")
    task = {
        "task": f"tunewise_clinc150_{arm}",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "context",  # the chat, already rendered with the model's template
        "doc_to_choice": [label + end for label in labels],
        "doc_to_target": "gold",
        "target_delimiter": "",
        "num_fewshot": 0,  # few-shot examples are inside the rendered chat, as tunewise puts them
        "metric_list": [{"metric": "acc"}],
    }
    try:
        lm = HFLM(pretrained=str(folder), dtype={"fp32": "float32", "bf16": "bfloat16"}[dtype],
                  device="cpu", batch_size=batch_size)
        tasks = get_task_dict([task], TaskManager())
        began = time.perf_counter()
        out = evaluate(lm, tasks, log_samples=True, bootstrap_iters=0, verbosity="ERROR")
        seconds = time.perf_counter() - began
    except Exception as error:  # noqa: BLE001 - say why, do not fake a figure
        return None, f"lm-eval {getattr(lm_eval, '__version__', '?')} failed: {type(error).__name__}: {error}"
    samples = sorted(out["samples"][task["task"]], key=lambda s: s["doc_id"])
    predictions, scores = [], []
    for sample in samples:
        loglikelihoods = [float(resp[0]) for resp in sample["filtered_resps"]]
        scores.append(loglikelihoods)
        predictions.append(labels[max(range(len(labels)), key=lambda i: loglikelihoods[i])])
    version = getattr(lm_eval, "__version__", "?")
    run = Run("lm-eval (HFLM loglikelihood)", arm, dtype, predictions, seconds,
              f"lm_eval {version}, batch_size {batch_size}, offline, local folder")
    return run, scores


# -- comparisons ---------------------------------------------------------------------------------


def agreement(a: Sequence, b: Sequence) -> tuple[int, int]:
    n = min(len(a), len(b))
    return sum(x == y for x, y in zip(a[:n], b[:n])), n


def check_exact(backend, candidate, examples, tunewise: Run, naive: Run, naive_all):
    """(b) against (c) on the subset: predictions equal, and how far apart the scores are."""
    import torch

    labels = list(candidate.plan.labels)
    scores = backend.score_options(candidate.prompts(examples), labels, exact=True)
    fast = torch.tensor([s.logprobs for s in scores], dtype=torch.float64)
    slow = torch.stack(naive_all)
    same, n = agreement(tunewise.predictions, naive.predictions)
    return {"equal": same, "n": n, "max_abs_logprob_diff": float((fast - slow).abs().max()),
            "picked_equal_predict": [labels[int(i)] for i in fast.argmax(1)] == tunewise.predictions[:n]}, fast


def partial_check(backend, candidate, model, tokenizer, example, n_labels: int, seed: int) -> dict:
    """--quick: naive scores for a few labels of one example (tunewise's best half, the rest at random)."""
    import torch

    labels = list(candidate.plan.labels)
    chat = candidate.prompts([example])[0]
    fast = torch.tensor(backend.score_options([chat], labels, exact=True)[0].logprobs, dtype=torch.float64)
    top = fast.argsort(descending=True)[: max(1, n_labels // 2)].tolist()
    rest = [i for i in range(len(labels)) if i not in top]
    picked = top + random.Random(seed).sample(rest, n_labels - len(top))
    began = time.perf_counter()
    slow = naive_scores(model, tokenizer, chat, [labels[i] for i in picked])
    return {"labels": len(picked), "seconds": time.perf_counter() - began,
            "max_abs_logprob_diff": float((fast[picked] - slow).abs().max()),
            "same_best": int(torch.tensor(picked)[slow.argmax()]) == int(fast.argmax())}


# -- main ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    home = Path(os.environ.setdefault("TUNEWISE_HOME", str(Path(".tunewise").resolve())))
    began_all = time.perf_counter()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from tunewise.arms.base import ArmContext
    from tunewise.arms.few_shot import FewShot
    from tunewise.arms.zero_shot import ZeroShot
    from tunewise.models.catalog import models_dir, pull
    from tunewise.models.local import LocalBackend

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    print(f"# eval_throughput {dt.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine: {info['nproc']} cores, {info['cpu']} ({', '.join(info['simd']) or 'no AVX-512'}), "
          f"load average {' '.join(f'{x:.2f}' for x in info['loadavg'])} at start")
    print(f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"transformers {transformers.__version__}; TUNEWISE_HOME={home}")
    print(f"command: {' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}")
    print(f"data: {ATTRIBUTION}")

    dataset = clinc_dataset(home)
    labels = list(dataset.labels)
    sample = list(dataset.test)
    random.Random(args.seed).shuffle(sample)
    examples = sample[: args.limit + 1]  # +1: the warm-up example, outside every measured set
    gold = [e.output for e in examples[:-1]]
    folder = pull(MODEL) if not (models_dir() / MODEL / "manifest.json").exists() else models_dir() / MODEL
    print(f"sample: {args.limit} of {len(dataset.test)} test examples (seed {args.seed}), {len(labels)} labels; "
          f"the slow peers take the first examples of the same sample")
    if args.quick:
        print("QUICK MODE: small N (figures are noisy); the naive check is partial (one example, "
              f"{args.naive_labels} labels); lm-eval is skipped unless --lmeval-limit is given")

    runs: list[Run] = []
    checks: dict[str, dict] = {}
    lmeval_notes: dict[str, str] = {}
    for d_index, dtype in enumerate(args.dtype):
        primary = d_index == 0
        t0 = time.perf_counter()
        backend = LocalBackend.load(MODEL, device="cpu", dtype=dtype)
        plain = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype={"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]).eval()
        tokenizer = backend.tokenizer
        print(f"\n== {dtype}: loaded tunewise backend + plain model in {time.perf_counter() - t0:.1f} s")
        context = ArmContext(dataset=dataset, backend=lambda _spec, loaded=backend: loaded,
                             embedder=lambda: None, seed=args.seed)
        for arm in args.arms:
            spec = ZeroShot(MODEL) if arm == "zero_shot" else FewShot(MODEL, selection="random")
            t0 = time.perf_counter()
            candidate = spec.prepare(context)
            chats = candidate.prompts(examples)
            n_tokens = len(tokenizer.apply_chat_template(messages(chats[0]), add_generation_prompt=True,
                                                         tokenize=True, return_dict=True)["input_ids"])
            extra = f", k_used {candidate.config['k_used']}" if "k_used" in candidate.config else ""
            print(f"-- {arm} ({spec.name}{extra}): prepare {time.perf_counter() - t0:.2f} s, "
                  f"first prompt {n_tokens} tokens")

            tw = TunewiseRunner(candidate, examples[-1])
            pg = PlainGenerateRunner(plain, tokenizer, labels, warmup_chat=chats[-1][-1:])
            interleaved(tw, pg, examples[:-1], chats[:-1], plain_limit=args.plain_limit,
                        plain_seconds=args.plain_seconds)
            scored = len(labels) - sum(tw.bounded) / max(len(tw.bounded), 1)
            tw_run = Run("tunewise", arm, dtype, tw.outputs, tw.seconds,
                         f"real predict, batches of {tw.step}; {scored:.1f} of {len(labels)} labels scored in full "
                         "per example")
            budget = f"limit {args.plain_limit}" if args.plain_limit is not None else f"~{args.plain_seconds:.0f} s box"
            pg_run = Run("plain generate loop", arm, dtype, pg.outputs, pg.seconds,
                         f"max_new_tokens={pg.max_new_tokens}, {budget}, interleaved with tunewise")
            runs += [tw_run, pg_run]
            report(tw_run, gold)
            report(pg_run, gold)
            same, n = agreement(tw_run.predictions, pg_run.predictions)
            valid = sum(p is not None for p in pg_run.predictions)
            print(f"   generate loop: {valid}/{pg_run.n} outputs were a label; agrees with tunewise on {same}/{n} "
                  f"(differs by design); first outputs: {[t[:40] for t in pg.texts[:3]]}")

            if not primary:
                continue
            fast = naive_all = None
            if args.naive_limit > 0:
                subset = min(args.naive_limit, args.limit)
                nv, naive_all = run_naive(plain, tokenizer, chats[:subset], labels, arm, dtype)
                runs.append(nv)
                report(nv, gold)
                check, fast = check_exact(backend, candidate, examples[:subset], tw_run, nv, naive_all)
                checks[arm] = check
                verdict = "PASS" if check["equal"] == check["n"] and check["picked_equal_predict"] else "FAIL"
                print(f"   CHECK tunewise == naive scoring: {verdict} ({check['equal']}/{check['n']} equal "
                      f"predictions; max |logprob diff| over all {len(labels)} labels "
                      f"{check['max_abs_logprob_diff']:.2e})")
            elif args.naive_labels > 0:
                check = partial_check(backend, candidate, plain, tokenizer, examples[0], args.naive_labels, args.seed)
                checks[arm] = {**check, "partial": True}
                verdict = "PASS" if check["same_best"] else "FAIL"
                print(f"   PARTIAL CHECK (quick: 1 example, {check['labels']} labels, {check['seconds']:.1f} s): "
                      f"{verdict}; max |logprob diff| {check['max_abs_logprob_diff']:.2e}")
            if args.lmeval_limit > 0:
                subset = min(args.lmeval_limit, args.limit)
                lm, lm_scores = run_lmeval(folder, dtype, tokenizer, chats[:subset], gold[:subset], labels, arm,
                                           args.lmeval_batch_size)
                if lm is None:
                    lmeval_notes[arm] = lm_scores
                    print(f"   lm-eval: NOT RUN: {lm_scores}")
                else:
                    runs.append(lm)
                    report(lm, gold)
                    same, n = agreement(tw_run.predictions, lm.predictions)
                    note = f"agrees with tunewise on {same}/{n} examples"
                    if fast is not None:
                        # lm-eval - tunewise should be one constant per example (log p(newline | prompt))
                        k = min(len(lm_scores), fast.shape[0])
                        delta = torch.tensor(lm_scores[:k], dtype=torch.float64) - fast[:k]
                        spread = float((delta.max(1).values - delta.min(1).values).max())
                        note += f"; its scores = tunewise's + a per-example constant, to within {spread:.2e}"
                    lmeval_notes[arm] = note
                    print(f"   lm-eval {note}")
            else:
                lmeval_notes[arm] = "skipped (--lmeval-limit 0)"
        backend.close()
        del plain

    summary = summarise(args, runs, gold)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "runs": [{**dataclasses.asdict(r), "n": r.n, "ex_per_s": r.rate, "accuracy": r.accuracy(gold)}
                     for r in runs],
            "checks": checks, "lmeval": lmeval_notes, "summary": summary,
            "wall_s": time.perf_counter() - began_all, "loadavg_end": os.getloadavg(),
        }, indent=1))
    print(f"\nwall {time.perf_counter() - began_all:.0f} s; load average at end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    key = summary["key"]
    print(key["line"])
    return 0


def report(run: Run, gold: Sequence[str]) -> None:
    common = ", ".join(f"{label} x{count}" for label, count in Counter(run.predictions).most_common(3))
    print(f"   {run.peer:<30} n={run.n:<4} {run.rate:7.3f} ex/s  ({run.seconds / max(run.n, 1):6.2f} s/ex)  "
          f"accuracy {run.accuracy(gold):6.1%}  [{run.note}; most chosen: {common}]")


def summarise(args, runs: list[Run], gold) -> dict:
    find = {(r.peer, r.arm, r.dtype): r for r in runs}
    print("\n== summary (ex/s; ratio = tunewise / plain generate loop, same arm and dtype)")
    rows = {}
    for dtype in args.dtype:
        for arm in args.arms:
            tw, pg = find.get(("tunewise", arm, dtype)), find.get(("plain generate loop", arm, dtype))
            if tw and pg:
                ratio = tw.rate / pg.rate
                rows[f"{arm}/{dtype}"] = {"tunewise": tw.rate, "plain": pg.rate, "ratio": ratio}
                print(f"   {arm:<10} {dtype}: tunewise {tw.rate:.3f} ex/s (n={tw.n}, acc {tw.accuracy(gold):.1%}) vs "
                      f"plain generate {pg.rate:.3f} ex/s (n={pg.n}, acc {pg.accuracy(gold):.1%}): "
                      f"ratio {ratio:.1f}x {'(>= 5x target met)' if ratio >= 5 else '(below the 5x target)'}")
    if len(args.dtype) > 1:
        a, b = args.dtype[:2]
        for arm in args.arms:
            ra, rb = find.get(("tunewise", arm, a)), find.get(("tunewise", arm, b))
            if ra and rb:
                same, n = agreement(ra.predictions, rb.predictions)
                faster = a if ra.rate > rb.rate else b
                print(f"   {arm:<10} tunewise {a} {ra.rate:.3f} vs {b} {rb.rate:.3f} ex/s: {faster} is "
                      f"{max(ra.rate, rb.rate) / min(ra.rate, rb.rate):.2f}x faster; predictions agree on "
                      f"{same}/{n} ({same / n:.1%}); accuracy {ra.accuracy(gold):.1%} vs {rb.accuracy(gold):.1%}")
    arm = args.arms[0]
    dtype = args.dtype[0]
    tw, pg = find[("tunewise", arm, dtype)], find[("plain generate loop", arm, dtype)]
    name = {"zero_shot": "zero-shot", "few_shot": "few-shot random"}[arm]
    line = (f"ratio {tw.rate / pg.rate:.1f} (tunewise {tw.rate:.2f} ex/s vs plain generate loop {pg.rate:.2f} ex/s, "
            f"{name} CLINC150, {dtype}, n={tw.n}{', QUICK' if args.quick else ''})")
    return {"rows": rows, "key": {"line": line, "arm": arm, "dtype": dtype, "ratio": tw.rate / pg.rate}}


if __name__ == "__main__":
    sys.exit(main())
