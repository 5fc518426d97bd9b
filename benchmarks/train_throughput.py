"""LoRA training throughput: tunewise against a plain transformers Trainer + PEFT, same LoRA.

One process, one seeded subset of the CLINC150 training split, smollm2-135m-instruct, and the
same LoRA for both: rank, alpha, every linear layer but the LM head, no dropout, AdamW at the
same learning rate with transformers' linear schedule (no warm-up), gradient clipping at 1.0,
the same batch size, steps and seed. The prompt is the lora arm's: the zero-shot brief
(instruction + the 151 labels) as system message, the message as user turn, the label plus
the end-of-turn marker as the answer, with the loss on the answer tokens only.

(a) Trainer + PEFT   as a user writes it from the transformers and PEFT docs: get_peft_model
                     with a LoraConfig, a datasets.Dataset of input_ids / attention_mask /
                     labels (-100 on the prompt), DataCollatorForSeq2Seq padding, Trainer.
                     Two departures, so that both runs see the same examples in the same
                     order and from the same start: the token ids are tunewise's (prompt ids
                     + answer ids, exactly what inference scores) and the Trainer samples
                     sequentially from a dataset put in tunewise's epoch order
                     (``train_sampling_strategy="sequential"``, a documented option).
                     tunewise's LoRA layers draw their initial weights as PEFT does, so the
                     same seed starts both from the same adapter.
(b) tunewise         ``train_adapter`` (packed rows behind the shared prompt prefix, the LM
                     head on answer positions only, fused LoRA add), timed as a whole call:
                     tokenising, weight hashing, checkpoints and the adapter files included.

Printed: training tokens per second of both (prompt + answer tokens of the examples trained,
counted the same way for both, so the ratio is a ratio of wall times), their loss curves and
whether the final losses (mean of the last quarter of the steps) agree within 2%, and the
fraction of the machine's matmul peak each reached: the matmul FLOPs each actually executed
(from the shapes it ran: padded batches for (a), packed rows for (b)) per second, over the
best fp32 matmul rate measured on this machine in the same process (bf16 too, for reference).

Data: CLINC150, Larson et al., "An Evaluation Dataset for Intent Classification and
Out-of-Scope Prediction", EMNLP 2019 (github: clinc/oos-eval), CC BY 3.0.

    python benchmarks/train_throughput.py --quick
    python benchmarks/train_throughput.py --steps 24 --batch 8
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _clinc150 import ATTRIBUTION, DATA, INSTRUCTION
from _machine import machine

MODEL = "smollm2-135m-instruct"
AGREEMENT = 0.02  # the final losses must agree within 2%


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="2 steps of batch 2 (under 2 minutes on an idle 2-core box; the Trainer peer pays for "
                   "~700-token prompts per example)")
    p.add_argument("--steps", type=int, help="optimizer steps for both (default 24; quick 2)")
    p.add_argument("--batch", type=int, help="examples per step (default 8; quick 2)")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, help="default 2 x rank")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, one per physical core)")
    p.add_argument("--bf16", action="store_true", help="also run tunewise with bf16 autocast (c) and compare")
    p.add_argument("--skip-trainer", action="store_true", help="run tunewise only (no ratio)")
    p.add_argument("--json", type=Path, help="also write every figure here")
    args = p.parse_args(argv)
    args.steps = args.steps or (2 if args.quick else 24)
    args.batch = args.batch or (2 if args.quick else 8)
    args.alpha = args.alpha or 2.0 * args.rank
    return args


# -- the machine's matmul peak ------------------------------------------------------------------


def matmul_peak(dtype, sizes=(1024, 2048), repeats: int = 5) -> float:
    """Best FLOP/s of a square matmul over a few sizes and repeats: the machine's practical ceiling."""
    import torch

    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up: thread pool, packing buffers
        for _ in range(repeats):
            began = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - began))
    return best


# -- data ---------------------------------------------------------------------------------------


def load_pairs(backend, n: int, seed: int):
    """``n`` CLINC150 training examples (seeded) as the lora arm builds them."""
    from tunewise.arms.prompts import shared_prefix, task_brief, with_input
    from tunewise.task.card import TaskCard
    from tunewise.train import TrainingPair

    rows = [json.loads(line) for line in (DATA / "train.jsonl").open()]
    labels = sorted({r["output"] for r in rows})
    card = TaskCard.model_validate({"name": "clinc150", "kind": "classify", "instruction": INSTRUCTION,
                                    "data": {"file": "train.jsonl"}, "labels": labels})
    prefix = shared_prefix(task_brief(card, labels=labels))
    picked = random.Random(seed).sample(rows, n)
    return [TrainingPair(with_input(prefix, r["input"]), r["output"]) for r in picked]


# -- FLOPs actually executed ------------------------------------------------------------------


class FlopCounter:
    """Matmul FLOPs of a LoRA training step from the shapes it runs (the elementwise work is
    left out: the peak it is compared with is a matmul peak)."""

    def __init__(self, model, rank: int):
        """``model``: the plain base model (no adapters attached)."""
        config = model.config
        self.layers = config.num_hidden_layers
        self.hidden = config.hidden_size
        heads = config.num_attention_heads
        self.q_width = heads * (getattr(config, "head_dim", None) or config.hidden_size // heads)
        self.vocab = config.vocab_size
        head = model.get_output_embeddings()
        linears = [m for m in model.modules() if isinstance(m, torch_nn().Linear) and m is not head]
        self.linear_params = sum(m.in_features * m.out_features for m in linears)  # every decoder linear
        self.lora_params = sum(rank * (m.in_features + m.out_features) for m in linears)

    def sequence(self, tokens: int, attended: int, predicted: int) -> float:
        """One forward + backward over ``tokens`` positions, attention over ``attended`` key
        positions each (what SDPA computes, masked or not), the LM head on ``predicted`` positions.
        Frozen base: the backward computes input gradients only (as many FLOPs as the forward);
        LoRA's own weights get gradients too."""
        linear = tokens * (2 * self.linear_params) * 2  # forward + input gradients
        lora = tokens * (2 * self.lora_params) * 3  # forward, input and weight gradients
        attention = self.layers * 4 * tokens * attended * self.q_width * 3  # QK^T and AV; backward ~2x
        head = predicted * 2 * self.hidden * self.vocab * 2  # forward + input gradients
        return linear + lora + attention + head


def torch_nn():
    import torch

    return torch.nn


# -- (a) Trainer + PEFT ------------------------------------------------------------------------


def run_trainer(folder: Path, encoded, order: list[int], args, workdir: Path, counter: FlopCounter) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    torch.manual_seed(args.seed)  # the LoRA initialisation
    model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    features = [{"input_ids": list(e.prompt + e.answer), "attention_mask": [1] * e.n_tokens,
                 "labels": [-100] * len(e.prompt) + list(e.answer)} for e in (encoded[i] for i in order)]
    training_args = TrainingArguments(
        output_dir=str(workdir / "trainer"), per_device_train_batch_size=args.batch, max_steps=args.steps,
        learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        optim="adamw_torch", logging_steps=1, save_strategy="no", report_to=[], seed=args.seed, use_cpu=True,
        dataloader_num_workers=0, train_sampling_strategy="sequential", disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=Dataset.from_list(features),
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    trainer.remove_callback(PrinterCallback)  # its per-step dicts would bury the report
    began, began_cpu = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    losses = [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    flops = 0.0
    for step in range(args.steps):
        batch = [encoded[i] for i in order[step * args.batch:(step + 1) * args.batch]]
        width = max(e.n_tokens for e in batch)  # padded to the longest in the batch
        flops += len(batch) * counter.sequence(width, width, width)  # logits at every position
    tokens = sum(encoded[i].n_tokens for i in order[: args.steps * args.batch])
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "losses": losses, "tokens": tokens, "flops": flops}


# -- (b) tunewise -----------------------------------------------------------------------------


def run_tunewise(backend, pairs, encoded, order: list[int], args, workdir: Path, precision: str,
                 counter: FlopCounter) -> dict:
    from tunewise.train import LoraSettings, train_adapter
    from tunewise.train.data import pack

    settings = LoraSettings(rank=args.rank, alpha=args.alpha, learning_rate=args.lr, batch_size=args.batch, epochs=1,
                            max_steps=args.steps, warmup_ratio=0.0, dropout=0.0, max_grad_norm=1.0,
                            precision=precision, threads=args.threads)
    began_cpu = time.process_time()
    result = train_adapter(backend, pairs, [], settings, out_dir=workdir / f"tunewise-{precision}", resume=False,
                           seed=args.seed)
    cpu_seconds = time.process_time() - began_cpu
    flops = 0.0
    resolved = settings.resolve(len(pairs))
    for step in range(args.steps):
        batch = [encoded[i] for i in order[step * args.batch:(step + 1) * args.batch]]
        for row in pack(batch, resolved.max_pack_tokens or 2048):
            flops += counter.sequence(row.length, row.length, int(row.targets.numel()))
    tokens = sum(encoded[i].n_tokens for i in order[: args.steps * args.batch])
    return {"seconds": result.wall_s, "cpu_seconds": cpu_seconds, "loop_seconds": result.train_seconds,
            "losses": [loss for _, loss in result.train_loss], "tokens": tokens, "flops": flops,
            "stopped": result.stopped}


# -- report -----------------------------------------------------------------------------------


def final_loss(losses: list[float]) -> float:
    tail = losses[-max(1, len(losses) // 4):]
    return sum(tail) / len(tail)


def curve(losses: list[float], points: int = 12) -> str:
    if len(losses) <= points:
        picked = list(enumerate(losses, 1))
    else:
        steps = sorted({round(k * (len(losses) - 1) / (points - 1)) for k in range(points)})
        picked = [(i + 1, losses[i]) for i in steps]
    return " ".join(f"{step}:{loss:.3f}" for step, loss in picked)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    import transformers

    from tunewise.models.catalog import pull
    from tunewise.models.local import LocalBackend
    from tunewise.train.data import encode_pairs, epoch_order

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    print(f"# train_throughput  {dt.date.today()}  {' '.join(sys.argv)}")
    print(f"machine: {info['nproc']} cores, {info['cpu']}, {' '.join(info['simd']) or 'no AVX-512'}; "
          f"load average {info['loadavg'][0]:.1f}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"transformers {transformers.__version__}")
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak: fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")

    folder = pull(MODEL)
    backend = LocalBackend.load(MODEL, device="cpu", dtype="float32")
    n = args.steps * args.batch
    pairs = load_pairs(backend, n, args.seed)
    encoded, _ = encode_pairs(backend, pairs, max_tokens=10_000)
    order = epoch_order(len(encoded), args.seed, 0)  # tunewise's first-epoch order: the Trainer gets the same
    mean_tokens = sum(e.n_tokens for e in encoded) / len(encoded)
    print(f"data: {n} CLINC150 train examples (seed {args.seed}), {mean_tokens:.0f} tokens each on average "
          f"(prompt + answer); LoRA r={args.rank} alpha={args.alpha:g} all-linear, batch {args.batch}, "
          f"{args.steps} steps, lr {args.lr:g}, fp32")

    counter = FlopCounter(backend.model, args.rank)
    figures: dict = {"machine": info, "peaks": peaks, "args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        runs = {}
        if not args.skip_trainer:
            runs["Trainer"] = run_trainer(folder, encoded, order, args, workdir, counter)
        runs["tunewise"] = run_tunewise(backend, pairs, encoded, order, args, workdir, "float32", counter)
        if args.bf16:
            runs["tunewise bf16"] = run_tunewise(backend, pairs, encoded, order, args, workdir, "bfloat16", counter)

    print()
    # Wall time is what a user waits; CPU time (all threads) is steadier on a machine other jobs
    # share, where the wall time of two runs measured minutes apart can differ by the load alone.
    print(f"{'peer':<15} {'tokens/s':>9} {'wall s':>8} {'tok/CPU-s':>9} {'CPU s':>8} {'final loss':>10} "
          f"{'GFLOP/s':>8} {'% fp32 peak':>11}")
    for name, run in runs.items():
        rate = run["tokens"] / run["seconds"]
        achieved = run["flops"] / run["seconds"]
        run.update(tokens_per_s=rate, tokens_per_cpu_s=run["tokens"] / run["cpu_seconds"], flops_per_s=achieved,
                   peak_fraction=achieved / peaks["fp32"])
        print(f"{name:<15} {rate:>9.1f} {run['seconds']:>8.1f} {run['tokens_per_cpu_s']:>9.1f} "
              f"{run['cpu_seconds']:>8.1f} {final_loss(run['losses']):>10.4f} {achieved / 1e9:>8.1f} "
              f"{100 * achieved / peaks['fp32']:>10.1f}%")
    print()
    for name, run in runs.items():
        print(f"loss curve {name}: {curve(run['losses'])}")
    figures["runs"] = runs

    ours = runs["tunewise"]
    for other in [name for name in runs if name != "tunewise"]:
        a, b = final_loss(runs[other]["losses"]), final_loss(ours["losses"])
        gap = abs(a - b) / a
        verdict = "agree" if gap <= AGREEMENT else "DISAGREE"
        print(f"final loss {other} {a:.4f} vs tunewise {b:.4f}: {100 * gap:.2f}% apart, {verdict} "
              f"(limit {100 * AGREEMENT:.0f}%)")
        figures[f"agreement_{other}"] = gap
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    print(ATTRIBUTION)
    if "Trainer" in runs:
        trainer = runs["Trainer"]
        ratio = ours["tokens_per_s"] / trainer["tokens_per_s"]
        cpu_ratio = ours["tokens_per_cpu_s"] / trainer["tokens_per_cpu_s"]
        print(f"ratio {ratio:.1f} (tunewise {ours['tokens_per_s']:.0f} tok/s vs Trainer {trainer['tokens_per_s']:.0f} "
              f"tok/s, {MODEL}, CLINC150, r={args.rank}, batch {args.batch}, {args.steps} steps, fp32; "
              f"by CPU time {cpu_ratio:.1f})")
    else:
        print(f"tunewise {ours['tokens_per_s']:.0f} tok/s ({MODEL}, CLINC150, r={args.rank}, batch {args.batch}, "
              f"{args.steps} steps, fp32; --skip-trainer: no ratio)")


if __name__ == "__main__":
    main()
