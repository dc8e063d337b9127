"""Base-model regime: how the tiny base model's accuracy grows with pretraining tokens.

The paper's regime is a base that solves 35-70% (its 7B bases: 20-55%). This measurement chose
the demo's pretraining budget (docs/preregistration.md): the committed result was taken when the
demo-fast world had 500 test problems and the base 2M tokens (it solved ~17%); the recipe now
pretrains 3.5M tokens, which puts the base at ~50%. This trains ONE pretraining run of
`--tokens` on the demo-fast world and model, exactly as `critiquelab.pretrain.pretrain` builds its
corpus and tokenizer, checkpointing every `--save-every` steps (default: ~1M tokens), then grades
every checkpoint and the final model greedily on the world's VALIDATION split (never test).

Note: the LR schedule is cosine over the whole budget, so an intermediate checkpoint is not the
same as a shorter full run; its accuracy is a lower bound for a run of that length.

    .venv/bin/python benchmarks/base_regime.py --tokens 5000000 --out benchmarks/results/base_regime.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from critiquelab.config import EvalConfig, RunConfig, SampleConfig, TrainConfig, load_config
from critiquelab.evaluate import run_eval
from critiquelab.io import provenance
from critiquelab.pretrain import build_model, build_tokenizer, corpus_messages, critique_messages
from critiquelab.sample import run_sample
from critiquelab.train import fit
from critiquelab.world import write_world

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "demo-fast.yaml"
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"]
NOTE = ("The LR schedule is cosine (with warmup) over the full token budget, so an intermediate checkpoint "
        "is not the same as a shorter full run: its accuracy is a lower bound for a run of that length.")


def build_corpus(world_dir: Path, cfg: RunConfig):
    """The tokenizer and rows of `critiquelab.pretrain.pretrain`, step for step."""
    from critiquelab.io import read_jsonl

    problems = read_jsonl(world_dir / "pretrain.jsonl")
    tmp_tok = build_tokenizer([p["question"] + "\n" + p["solution"] for p in problems], 64)
    rng = random.Random(cfg.pretrain.seed)
    convs = [critique_messages(p, rng) if rng.random() < cfg.pretrain.critique_share else corpus_messages(p)
             for p in problems]
    texts = [tmp_tok.apply_chat_template(c, tokenize=False) for c in convs]
    tokenizer = build_tokenizer(texts, cfg.model.vocab_size)
    return tokenizer, [{"text": t} for t in texts]


def evaluate(model_dir: Path, eval_dir: Path, world_dir: Path, limit: int, tokenizer_src: Path) -> dict:
    for name in TOKENIZER_FILES:  # a checkpoint normally has them; copy any that is missing
        if (tokenizer_src / name).is_file() and not (model_dir / name).is_file():
            shutil.copy(tokenizer_src / name, model_dir / name)
    cfg = EvalConfig(benchmarks=["world-validation"], batch_size=128, max_new_tokens=100, limit=limit)
    t0 = time.time()
    r = run_eval(model_dir, eval_dir, cfg, world_dir=world_dir)["benchmarks"]["world-validation"]
    return {"accuracy": r["accuracy"], "ci95": r["ci95"], "n": r["n"], "correct": r["correct"],
            "no_answer": r["no_answer"], "eval_seconds": round(time.time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=6_000_000, help="pretraining token budget (one run)")
    ap.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (0: ~1M tokens)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "base_regime.json"))
    ap.add_argument("--limit", type=int, default=200, help="validation items to grade (default 200)")
    ap.add_argument("--world-overrides", nargs="*", default=[],
                    help="dotted overrides of the recipe, e.g. world.max_steps=2 pretrain.lr=1e-3")
    ap.add_argument("--sample-problems", type=int, default=200,
                    help="train problems for the final model's T=1.0 sampled share correct (0: skip)")
    ap.add_argument("--work-dir", default=None, help="keep the world/model/evals here (default: a temp dir)")
    args = ap.parse_args()

    t_start = time.time()
    cfg = load_config(RunConfig, RECIPE, args.world_overrides)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="base_regime-"))
    work.mkdir(parents=True, exist_ok=True)
    world_dir, model_dir = work / "world", work / "model"
    write_world(cfg.world, world_dir)
    tokenizer, rows = build_corpus(world_dir, cfg)
    model = build_model(cfg.model, tokenizer, seed=cfg.pretrain.seed)
    n_params = sum(p.numel() for p in model.parameters())
    mean_len = sum(len(tokenizer(r["text"])["input_ids"]) for r in rows) / len(rows)
    tokens_per_step = mean_len * cfg.pretrain.batch_size
    save_every = args.save_every or max(1, round(1_000_000 / tokens_per_step))
    print(f"{n_params / 1e6:.2f}M params, {len(rows)} docs, {mean_len:.1f} tokens/doc, "
          f"~{tokens_per_step:.0f} tokens/step, ~{args.tokens / tokens_per_step:.0f} steps, save every {save_every}",
          flush=True)

    train_cfg = TrainConfig(token_budget=args.tokens, lr=cfg.pretrain.lr, batch_size=cfg.pretrain.batch_size,
                            warmup_ratio=cfg.pretrain.warmup_ratio, weight_decay=cfg.pretrain.weight_decay,
                            seed=cfg.pretrain.seed, max_length=512, group_by_length=True, save_steps=save_every,
                            save_minutes=0)
    t0 = time.time()
    stats = fit(model, tokenizer, rows, model_dir, train_cfg, desc="pretrain", repeat=True)
    train_seconds = time.time() - t0

    ckpts = sorted((model_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    points = []
    t0 = time.time()
    for ck in ckpts:
        if int(ck.name.split("-")[1]) >= stats["steps"]:
            continue  # the end-of-run checkpoint holds the final model's weights: graded once, below
        state = json.loads((ck / "trainer_state.json").read_text())
        r = evaluate(ck, work / "evals" / ck.name, world_dir, args.limit, model_dir)
        points.append({"checkpoint": ck.name, "step": state["global_step"],
                       "tokens_seen": int(state["num_input_tokens_seen"]), **r})
        print(f"  {ck.name}: {100 * r['accuracy']:.1f}%", flush=True)
    final = evaluate(model_dir, work / "evals" / "final", world_dir, args.limit, model_dir)
    points.append({"checkpoint": "final", "step": stats["steps"], "tokens_seen": stats["tokens"], **final})
    eval_seconds = time.time() - t0

    sampled = None
    if args.sample_problems > 0:
        t0 = time.time()
        scfg = SampleConfig(source="model", n_problems=args.sample_problems, temperature=1.0, max_new_tokens=100)
        s = run_sample(world_dir / "train.jsonl", work / "samples.jsonl", scfg, model_dir=model_dir)
        sampled = {"split": "train", "n_problems": args.sample_problems, "temperature": 1.0,
                   "share_correct": s["share_correct"], "solutions": s["solutions"],
                   "seconds": round(time.time() - t0, 1)}

    result = {
        "benchmark": "base_regime",
        "question": "how the demo-fast base model's world-validation accuracy grows with pretraining tokens",
        "command": "python benchmarks/base_regime.py " + " ".join(
            [f"--tokens {args.tokens}", f"--limit {args.limit}"]
            + ([f"--save-every {args.save_every}"] if args.save_every else [])
            + ([f"--world-overrides {' '.join(args.world_overrides)}"] if args.world_overrides else [])),
        "note": NOTE,
        "eval": {"split": "world-validation (never test)", "decoding": "greedy", "max_new_tokens": 100,
                 "limit": args.limit},
        "config": {"recipe": str(RECIPE.relative_to(ROOT)), "overrides": args.world_overrides,
                   "world": asdict(cfg.world), "model": asdict(cfg.model), "pretrain": asdict(cfg.pretrain),
                   "train": asdict(train_cfg)},
        "corpus": {"docs": len(rows), "mean_tokens_per_doc": round(mean_len, 1),
                   "tokens_per_step_est": round(tokens_per_step), "save_every_steps": save_every},
        "params": n_params,
        "points": points,
        "sampled_final": sampled,
        "train": {k: stats.get(k) for k in ("tokens", "steps", "seconds", "tokens_per_s", "final_loss",
                                            "peak_memory_gib")},
        "loss_curve": stats.get("loss_curve"),
        "seconds": {"train": round(train_seconds, 1), "eval": round(eval_seconds, 1),
                    "total": round(time.time() - t_start, 1)},
        "provenance": provenance(),
        "work_dir": str(work),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print("\n| checkpoint | step | tokens seen | val acc % | 95% CI | no answer |")
    print("|---|---|---|---|---|---|")
    for p in points:
        print(f"| {p['checkpoint']} | {p['step']} | {p['tokens_seen']:,} | {100 * p['accuracy']:.1f} "
              f"| {100 * p['ci95'][0]:.1f}-{100 * p['ci95'][1]:.1f} | {p['no_answer']} |")
    if sampled:
        print(f"final model, T=1.0 sampled share correct on {sampled['n_problems']} train problems: "
              f"{100 * (sampled['share_correct'] or 0):.1f}%")
    print(f"wall time {result['seconds']['total']:.0f} s (train {train_seconds:.0f} s); wrote {out}")


if __name__ == "__main__":
    main()
