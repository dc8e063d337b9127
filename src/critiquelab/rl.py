"""Critique RL: GRPO with verdict rewards (TRL's GRPOTrainer), so no teacher text is imitated.

    critiquelab rl --model BASE --solutions solutions.jsonl --out models/crl rl.steps=200

Tasks, mixed in one dataset (`rl.critique_share`; each row carries its `task` and labels, and each
reward function scores only its own task's rows, returning None for the others):
- `critique`: the CFT prompt (question + a solution from a fixed pool); reward 1 when the parsed
  final verdict matches the solution's reference-graded correctness, 0 otherwise and when there is
  no verdict (Critique-Coder / CRL), plus `rl.format_bonus` for a parseable verdict.
- `solve`: the solving prompt; reward = the grader's correctness of the boxed answer.

The pool is fixed (solutions from `sample`, never the policy's fresh answers: critique-only RL on
its own answers was reward-hacked in GC-RL) and balanced 1:1 right/wrong by default, so a constant
verdict scores 0.5. `train_log.json` records the reward per task, the verdicts' balance and the
share without a verdict at every logged step: the reward-hacking guard.

This is the only module that imports GRPOTrainer (train.py is for SFTTrainer).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict

from critiquelab.build import cft_prompt, read_solutions
from critiquelab.config import RLConfig, key_of
from critiquelab.critique import parse_verdict
from critiquelab.grading import grade
from critiquelab.io import (
    UserError,
    mark_complete,
    output_dir,
    read_json,
    sha256_file,
    stable_hash,
    write_json,
)
from critiquelab.llm import check_model

__all__ = ["critique_reward", "plan_rl", "pool", "run_rl", "solve_reward"]

log = logging.getLogger(__name__)


def _text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion


def critique_reward(completions, task, correct, format_bonus: float = 0.0, **_) -> list[float | None]:
    """1 when the verdict matches the reference-graded correctness, else 0 (no verdict: 0)."""
    out: list[float | None] = []
    for c, t, ok in zip(completions, task, correct, strict=True):
        if t != "critique":
            out.append(None)
            continue
        verdict = parse_verdict(_text(c))
        out.append(float(verdict is not None and (verdict == "right") == ok) + (format_bonus if verdict else 0.0))
    return out


def solve_reward(completions, task, answer, **_) -> list[float | None]:
    """The grader's correctness of the final answer."""
    return [float(grade(_text(c), a).correct) if t == "solve" else None
            for c, t, a in zip(completions, task, answer, strict=True)]


def pool(solutions: list[dict], cfg: RLConfig) -> tuple[list[dict], dict]:
    """The fixed training pool: critique rows (balanced 1:1 right/wrong unless `balance` is off) and
    solve rows, at `critique_share`; and what it holds."""
    rng = random.Random(cfg.seed)
    graded = [s for s in solutions if isinstance(s.get("correct"), bool) and s["solution"].strip()]
    right, wrong = [s for s in graded if s["correct"]], [s for s in graded if not s["correct"]]
    if cfg.critique_share > 0 and (not right or not wrong):
        raise UserError(f"rl.solutions: need both right and wrong graded solutions for the critique task "
                        f"(found {len(right)} right, {len(wrong)} wrong)")
    if cfg.balance:
        n = min(len(right), len(wrong))
        right, wrong = rng.sample(right, n), rng.sample(wrong, n)
    critique = [{"prompt": [{"role": "user", "content": cft_prompt(s["question"], s["solution"], cfg.instruction)}],
                 "task": "critique", "correct": s["correct"], "answer": s.get("answer") or ""} for s in right + wrong]
    questions = {s["problem_id"]: s for s in graded if s.get("answer") is not None}
    solve = [{"prompt": [{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": s["question"]}],
              "task": "solve", "correct": False, "answer": s["answer"]} for s in questions.values()]
    if cfg.critique_share < 1:
        want = round(len(critique) * (1 - cfg.critique_share) / max(cfg.critique_share, 1e-9)) \
            if cfg.critique_share > 0 else len(solve)
        solve = (solve * (want // max(len(solve), 1) + 1))[:want] if solve else []
    else:
        solve = []
    rows = critique + solve
    rng.shuffle(rows)
    if not rows:
        raise UserError("rl.solutions: no graded solutions to train on")
    return rows, {"critique_rows": len(critique), "solve_rows": len(solve),
                  "critique_share_right": sum(r["correct"] for r in critique) / len(critique) if critique else None,
                  "balanced": cfg.balance}


class _Guard:
    """Counts the policy's verdicts between logs: their balance and the share without one."""

    def __init__(self):
        self.right = self.wrong = self.none = 0

    def observe(self, completions, task, **_) -> list[None]:
        for c, t in zip(completions, task, strict=True):
            if t == "critique":
                v = parse_verdict(_text(c))
                self.right += v == "right"
                self.wrong += v == "wrong"
                self.none += v is None
        return [None] * len(completions)

    def take(self) -> dict:
        n = self.right + self.wrong + self.none
        out = {"verdict_right_share": self.right / n if n else None, "no_verdict_share": self.none / n if n else None,
               "critiques_seen": n}
        self.right = self.wrong = self.none = 0
        return out


def plan_rl(cfg: RLConfig) -> dict:
    """Dry run: the pool (or what is missing to build it), the steps, and the completions and
    tokens the run will generate and train on (upper bounds: every completion at its maximum length).
    Reads no model and nothing from the network."""
    from pathlib import Path

    missing = [f"rl.{k} is not set" for k in ("model", "solutions", "output_dir") if not getattr(cfg, k)]
    info: dict = {}
    if cfg.solutions and Path(cfg.solutions).is_file():
        info = pool(read_solutions(cfg.solutions), cfg)[1]
    elif cfg.solutions:
        missing.append(f"rl.solutions={cfg.solutions}: not here (make it with `critiquelab sample`)")
    batch = cfg.batch_size * cfg.grad_accum
    if batch % cfg.num_generations:
        raise UserError(f"rl.num_generations={cfg.num_generations} must divide rl.batch_size x rl.grad_accum={batch}")
    completions = cfg.steps * batch  # per process; x the number of processes under accelerate
    return {"config": asdict(cfg), "pool": info, "steps": cfg.steps, "prompts_per_step": batch // cfg.num_generations,
            "completions_per_process": completions,
            "generated_tokens_max_per_process": completions * cfg.max_completion_length,
            "compute_note": "compute = generated + trained tokens; each completion is generated once and trained on "
                            "once (with its prompt), so trained tokens ~ generated tokens + prompts",
            "missing": missing}


def run_rl(cfg: RLConfig, *, overwrite: bool = False) -> dict:
    """GRPO from `cfg.model` on the pool of `cfg.solutions` into `cfg.output_dir` (resumable)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from critiquelab.train import _last_checkpoint, load_model

    missing = [f"rl.{k} is required" for k in ("model", "solutions", "output_dir") if not getattr(cfg, k)]
    if missing:
        raise UserError("; ".join(missing))
    check_model(cfg.model, "rl.model")
    rows, info = pool(read_solutions(cfg.solutions), cfg)
    batch = cfg.batch_size * cfg.grad_accum
    if batch % cfg.num_generations:
        raise UserError(f"rl.num_generations={cfg.num_generations} must divide rl.batch_size x rl.grad_accum={batch}")
    fingerprint = stable_hash({"rl": {k: v for k, v in key_of(cfg).items() if k != "output_dir"},
                               "solutions": sha256_file(cfg.solutions)})
    guard, curve = _Guard(), []

    class Curves(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                curve.append({"step": state.global_step, "reward": logs["reward"],
                              **{k.split("/")[1]: v for k, v in logs.items() if k.startswith("rewards/") and
                                 k.endswith("/mean")}, **guard.take()})

    with output_dir(cfg.output_dir, "rl", fingerprint=fingerprint, overwrite=overwrite) as (out, state):
        model, tokenizer = load_model(cfg.model, "rl.model")
        args = GRPOConfig(
            output_dir=str(out / "checkpoints"), learning_rate=cfg.lr, per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum, num_generations=cfg.num_generations,
            max_completion_length=cfg.max_completion_length, max_steps=cfg.steps, temperature=cfg.temperature,
            beta=cfg.beta, seed=cfg.seed, logging_steps=1, save_strategy="steps" if cfg.save_steps else "no",
            save_steps=max(cfg.save_steps, 1), report_to="none", disable_tqdm=True, bf16=cfg.bf16,
            use_cpu=not torch.cuda.is_available(), use_vllm=cfg.use_vllm, remove_unused_columns=False)
        if state == "done" and (out / "train_log.json").is_file():
            log.info("rl: %s already holds this finished model; nothing to do", out)
            return read_json(out / "train_log.json")

        def critique(**kw):  # (TRL names the reward curves after the functions)
            return critique_reward(format_bonus=cfg.format_bonus, **kw)

        def solve(**kw):
            return solve_reward(**kw)

        def verdicts(**kw):  # scores nothing: it counts the policy's verdicts for the guard
            return guard.observe(**kw)

        rewards = [critique, solve, verdicts]
        trainer = GRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tokenizer, callbacks=[Curves()])
        t0 = time.time()
        trainer.train(resume_from_checkpoint=_last_checkpoint(out / "checkpoints"))
        trainer.save_model(str(out))
        stats = {"pool": info, "steps": trainer.state.global_step, "seconds": round(time.time() - t0, 1),
                 "curve": curve, "config": asdict(cfg)}
        write_json(out / "train_log.json", stats)
        mark_complete(out)
    return stats

