"""GRPO step throughput: critiquelab's critique RL (`critiquelab rl`: its GRPOConfig, reward functions,
verdict metrics, token budget and progress callbacks) vs TRL's GRPOTrainer at its defaults, on the
same model, prompts and critique reward, in one process.

Each round builds a fresh trainer of each kind (A B A B ...) from the same weights and trains
`--steps` GRPO steps; throughput is generated tokens per second of the steps' own time (TRL's
`step_time`, which holds generation and the update), summed over the round. Prints the median ratio
critiquelab / TRL with its min and max over rounds, and writes JSON.

    .venv/bin/python benchmarks/grpo_throughput.py [--model DIR] [--rounds 5] [--steps 4]

Without --model it pretrains a small world base first (a minute); the demo's base is
`~/.cache/critiquelab/models/base-*` after `make demo`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from critiquelab.config import ModelConfig, PretrainConfig, RLConfig, SampleConfig, WorldConfig
from critiquelab.io import provenance, read_jsonl
from critiquelab.rl import critique_reward, make_trainer, pool


def base_and_pool(work: Path, model: str | None) -> tuple[str, list[dict]]:
    from critiquelab.pretrain import pretrain
    from critiquelab.sample import run_sample
    from critiquelab.world import write_world

    world = WorldConfig(max_number=9, max_factor=3, max_value=99, min_steps=2, max_steps=3, n_pretrain=4000,
                        n_train=400, n_validation=10, n_test=10)
    write_world(world, work / "world")
    if not model:
        model = str(work / "base")
        pretrain(work / "world", model, ModelConfig(), PretrainConfig(tokens=400_000, critique_share=0.25))
    run_sample(work / "world" / "train.jsonl", work / "solutions.jsonl", SampleConfig(source="synthetic",
                                                                                        error_rate=0.5), None)
    return model, read_jsonl(work / "solutions.jsonl")


def one_round(kind: str, model_dir: str, rows: list[dict], cfg: RLConfig, work: Path) -> dict:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from critiquelab.train import load_model

    model, tokenizer = load_model(model_dir)
    if kind == "critiquelab":
        trainer, _ = make_trainer(cfg, model, tokenizer, rows, work / kind, desc="critiquelab")
    else:  # TRL's defaults; only what the comparison needs is set, to the same values
        def critique(**kw):
            return critique_reward(**kw)

        args = GRPOConfig(output_dir=str(work / kind), per_device_train_batch_size=cfg.batch_size,
                          num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                          max_steps=cfg.steps, seed=cfg.seed, use_cpu=not torch.cuda.is_available(),
                          report_to="none", save_strategy="no", remove_unused_columns=False, logging_steps=1)
        trainer = GRPOTrainer(model=model, reward_funcs=[critique], args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tokenizer)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    logs = [h for h in trainer.state.log_history if "step_time" in h]
    generated = sum(h["completions/mean_length"] * cfg.batch_size for h in logs)
    seconds = sum(h["step_time"] for h in logs)
    return {"generated_tokens": round(generated), "step_seconds": round(seconds, 2), "wall_seconds": round(wall, 2),
            "generated_tokens_per_s": generated / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="a world base (default: pretrain a small one)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="GRPO steps per trainer and round")
    ap.add_argument("--out", default="benchmarks/results/grpo_throughput.json")
    args = ap.parse_args()
    cfg = RLConfig(num_generations=4, batch_size=16, max_completion_length=300, steps=args.steps, save_steps=0,
                   lr=1e-4)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, solutions = base_and_pool(work, args.model)
        rows = pool(solutions, cfg)[0]
        rounds = []
        for i in range(args.rounds):
            pair = {kind: one_round(kind, model, rows, cfg, work / f"r{i}") for kind in ("critiquelab", "trl_default")}
            pair["ratio"] = pair["critiquelab"]["generated_tokens_per_s"] / pair["trl_default"]["generated_tokens_per_s"]
            rounds.append(pair)
            print(f"round {i + 1}: critiquelab {pair['critiquelab']['generated_tokens_per_s']:.0f} tok/s, "
                  f"TRL defaults {pair['trl_default']['generated_tokens_per_s']:.0f} tok/s, ratio {pair['ratio']:.2f}",
                  flush=True)
    ratios = [r["ratio"] for r in rounds]
    result = {"what": "generated tokens per second of GRPO steps, critiquelab rl vs TRL GRPOTrainer defaults",
              "model": model, "settings": {"num_generations": cfg.num_generations, "completions_per_step": cfg.batch_size,
                                           "max_completion_length": cfg.max_completion_length,
                                           "steps_per_round": args.steps},
              "median_ratio": statistics.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios),
              "median_tokens_per_s": {k: statistics.median(r[k]["generated_tokens_per_s"] for r in rounds)
                                      for k in ("critiquelab", "trl_default")},
              "rounds": rounds, "provenance": provenance()}
    print(f"critiquelab / TRL defaults: median {result['median_ratio']:.2f} (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f}) over {len(ratios)} rounds")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
