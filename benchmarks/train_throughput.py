"""Training throughput: critiquelab's batching (length-grouped batches, dynamic padding) vs TRL's
default (random order, pad to the longest in the batch), same model, data and steps, one process.

Reports non-padding tokens/s of both and their ratio (target >= 1.5x), achieved FLOP/s as a
fraction of a measured fp32 matmul FLOP/s on this machine, and peak RSS. The data are CFT examples
from the synthetic world with a realistic spread (critiques of wrong solutions are longer; a share
of longer problems), the tiny demo architecture.

    .venv/bin/python benchmarks/train_throughput.py [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from critiquelab.build import cft_example
from critiquelab.config import ModelConfig, TrainConfig, WorldConfig
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default="benchmarks/results/train_throughput.json")
    args = ap.parse_args()
    rng = random.Random(0)
    world = generate_world(WorldConfig(n_pretrain=10, n_train=3000, n_validation=1, n_test=1, min_steps=1, max_steps=6))
    rows = []
    for p in world["train"]:
        sol = p["solution"] if rng.random() < 0.5 else noisy_solution(p, rng)[0]
        rows.append(cft_example("Please critique whether the following solution to the question is correct.",
                                p["question"], sol, check(p, sol).critique))
    tokenizer = build_tokenizer([r["prompt"][0]["content"] + r["completion"][0]["content"] for r in rows], 512)
    lengths = [len(tokenizer.apply_chat_template(r["prompt"] + r["completion"], return_dict=False)) for r in rows]
    base = TrainConfig(token_budget=0, max_steps=args.steps, batch_size=args.batch_size, lr=1e-3, max_length=1024)
    result = {"examples": len(rows), "length_min_mean_max": [min(lengths), round(sum(lengths) / len(lengths)),
                                                             max(lengths)], "steps": args.steps}
    params = None
    for name, cfg in (("trl_default", replace(base, group_by_length=False)), ("critiquelab", base)):
        model = build_model(ModelConfig(), tokenizer, seed=0)
        params = sum(p.numel() for p in model.parameters())
        with tempfile.TemporaryDirectory() as tmp:
            trainer, _ = make_trainer(model, tokenizer, rows, tmp, cfg, desc=name)
            seen = {"real": 0, "padded": 0}
            orig = trainer.training_step

            def counting_step(model_, inputs, *a, seen=seen, orig=orig, **kw):
                seen["real"] += int(inputs["attention_mask"].sum())
                seen["padded"] += inputs["input_ids"].numel()
                return orig(model_, inputs, *a, **kw)

            trainer.training_step = counting_step
            t0 = time.perf_counter()
            trainer.train()
            dt = time.perf_counter() - t0
        result[name] = {"seconds": round(dt, 2), "real_tokens": seen["real"], "padded_tokens": seen["padded"],
                        "padding_share": round(1 - seen["real"] / seen["padded"], 3),
                        "real_tokens_per_s": round(seen["real"] / dt)}
    result["speedup_real_tokens_per_s"] = round(result["critiquelab"]["real_tokens_per_s"]
                                                / result["trl_default"]["real_tokens_per_s"], 2)
    peak = matmul_flops()
    achieved = 6 * params * result["critiquelab"]["real_tokens_per_s"]
    result.update({"params": params, "matmul_flops_per_s": round(peak), "achieved_flops_per_s": round(achieved),
                   "fraction_of_matmul_peak": round(achieved / peak, 3),
                   "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)})
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
