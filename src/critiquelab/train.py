"""Fine-tuning with TRL's SFTTrainer: SFT and CFT are the same trainer on different data.

Inputs: a base model (dir or hub name) and a dataset JSONL written by `build` (TRL
conversational prompt-completion rows). Output: a model dir that
`AutoModelForCausalLM.from_pretrained` loads, with `train_log.json` (loss curve, tokens,
throughput, peak memory). The loss is on the completion only (`completion_only_loss=True`, set
explicitly, as are `loss_type`, packing and padding-free).

The output directory is claimed before any compute (see `io.output_dir`): a directory critiquelab
did not make is refused, and a finished model of other settings is replaced only with `overwrite`.
Checkpoints go to `<output_dir>/checkpoints/` every `save_minutes` (default 5) and every
`save_steps`; rerunning the same command after an interruption resumes from the last complete
one (optimizer, scheduler, RNG and data order restored), and `train_log.json` accounts for the
whole run: its loss curve, seconds and trained tokens span every resume. The marker's `complete`
flag is set last, when the model is saved. With `select_best_on`, every checkpoint is evaluated
on that benchmark and the best is copied to `<output_dir>/best/`.

    critiquelab train --config recipes/tiny-cpu.yaml train.model=runs/demo/base train.data=runs/demo/dataset/cft.jsonl
    accelerate launch --config_file recipes/accelerate/zero3-8gpu.yaml -m critiquelab.cli train --config recipes/qwen2.5-math-7b-cft.yaml

This is the only module that imports TRL.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from critiquelab.config import TrainConfig, key_of
from critiquelab.io import (
    Interrupted,
    UserError,
    check_rows,
    mark_complete,
    output_dir,
    read_json,
    read_jsonl,
    read_marker,
    sha256_file,
    stable_hash,
    write_json,
)
from critiquelab.llm import check_model, load_causal_lm, load_tokenizer
from critiquelab.logs import progress_bar

__all__ = ["fit", "make_trainer", "load_model", "plan", "plan_line", "run_train", "select_by_budget", "summary_line"]

log = logging.getLogger(__name__)


def _count_tokens(tokenizer, row: dict) -> int:
    if "text" in row:
        return len(tokenizer(row["text"])["input_ids"])
    ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=False)
    return len(ids)


def _prompt_tokens(tokenizer, row: dict) -> int:
    """The tokens before the completion starts (0 for a plain-text row)."""
    if "prompt" not in row:
        return 0
    return len(tokenizer.apply_chat_template(row["prompt"], tokenize=True, add_generation_prompt=True,
                                             return_dict=False))


def select_by_budget(rows: list[dict], lengths: list[int], budget: int, seed: int,
                     repeat: bool) -> tuple[list[dict], int]:
    """Shuffle, then take rows until their tokens reach `budget` (cycling if `repeat`)."""
    order = list(range(len(rows)))
    rng = random.Random(seed)
    rng.shuffle(order)
    chosen, total = [], 0
    while total < budget:
        for i in order:
            if total >= budget:
                break
            chosen.append(rows[i])
            total += lengths[i]
        if not repeat:
            break
        rng.shuffle(order)
    return chosen, total


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def prepare_rows(rows: list[dict], tokenizer, cfg: TrainConfig, desc: str, repeat: bool) -> tuple[list[dict], dict]:
    """Length accounting, the too-long policy and the token budget, before any training step."""
    if not rows:
        raise UserError(f"{desc}: the training set is empty")
    lengths = [_count_tokens(tokenizer, r) for r in rows]
    too_long = sum(n > cfg.max_length for n in lengths)
    no_room = 0
    if too_long:
        log.warning("%s: %d of %d examples exceed max_length=%d and are %s", desc, too_long, len(rows),
                    cfg.max_length, "dropped" if cfg.too_long == "drop" else "truncated")
        fix = f"raise train.max_length (now {cfg.max_length}) or shorten the prompts"
        if cfg.too_long == "drop":
            keep = [n <= cfg.max_length for n in lengths]
            if not any(keep):
                raise UserError(f"{desc}: every example is longer than max_length={cfg.max_length}; {fix}")
        else:  # truncation cuts the completion's end; a prompt that fills max_length leaves nothing to learn
            keep = [n <= cfg.max_length or _prompt_tokens(tokenizer, r) < cfg.max_length
                    for r, n in zip(rows, lengths, strict=True)]
            no_room = keep.count(False)
            if no_room:
                log.warning("%s: %d examples dropped: their prompt alone fills max_length=%d, so no completion "
                            "token would be trained on", desc, no_room, cfg.max_length)
            if not any(keep):
                raise UserError(f"{desc}: every example's prompt fills max_length={cfg.max_length}, so truncation "
                                f"leaves no completion to train on; {fix}")
        rows = [r for r, k in zip(rows, keep, strict=True) if k]
        lengths = [n for n, k in zip(lengths, keep, strict=True) if k]
    if cfg.token_budget > 0:
        chosen, tokens = select_by_budget(rows, lengths, cfg.token_budget, cfg.seed, repeat)
    else:
        chosen, tokens = rows, sum(lengths)
    per_step = cfg.batch_size * cfg.grad_accum * _world_size()
    epochs = 1 if cfg.token_budget > 0 else cfg.epochs
    # As the Trainer counts: every epoch ends with a step of its own, full or not (2 rows, batch 4,
    # 3 epochs: 3 steps, not ceil(2 x 3 / 4) = 2).
    per_epoch = -(-len(chosen) // per_step)
    steps = cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(epochs * per_epoch))
    return chosen, {"examples": len(chosen), "unique_examples": len({id(r) for r in chosen}),
                    "planned_tokens": int(tokens * epochs), "too_long": too_long, "too_long_policy": cfg.too_long,
                    "prompt_fills_max_length": no_room,
                    "global_batch": per_step, "world_size": _world_size(), "planned_steps": steps}


def _progress_callback(total_steps: int, desc: str):
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.progress = None
            if state.is_world_process_zero:
                self.progress = progress_bar(desc, "info")
                self.progress.start()
                self.task = self.progress.add_task(desc, total=state.max_steps or total_steps, info="")

        def on_step_end(self, args, state, control, **kw):
            if self.progress:
                self.progress.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kw):
            if self.progress and logs and "loss" in logs:
                self.progress.update(self.task, info=f"loss {logs['loss']:.3f} lr {logs.get('learning_rate', 0):.2e}")

        def on_train_end(self, args, state, control, **kw):
            if self.progress:
                self.progress.stop()

    return RichProgress()


CLOCK = "critiquelab_clock.json"  # in each checkpoint: seconds trained up to it


def _checkpoint_callback(save_minutes: float):
    """Save a checkpoint whenever `save_minutes` passed since the last one (every rank agrees:
    rank 0's clock decides), and write the training seconds so far into each checkpoint."""
    import torch
    from transformers import TrainerCallback

    class WallClockCheckpoints(TrainerCallback):
        def __init__(self):
            self.before = 0.0  # seconds trained before this process (restored on resume)
            self.start = self.last = time.monotonic()

        def elapsed(self) -> float:
            return self.before + time.monotonic() - self.start

        def on_step_end(self, args, state, control, **kw):
            if save_minutes <= 0:
                return
            due = time.monotonic() - self.last >= 60 * save_minutes
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                flag = torch.tensor([int(due)], device=args.device)
                torch.distributed.broadcast(flag, 0)
                due = bool(flag.item())
            if due:
                control.should_save = True

        def on_save(self, args, state, control, **kw):
            self.last = time.monotonic()
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and ckpt.is_dir():
                write_json(ckpt / CLOCK, {"seconds": round(self.elapsed(), 1), "step": state.global_step})

    return WallClockCheckpoints()


def make_trainer(model, tokenizer, rows: list[dict], out_dir: str | Path, cfg: TrainConfig, *,
                 desc: str = "train", repeat: bool = True):
    """An SFTTrainer over `rows` ({"text"} for LM, or conversational prompt/completion) with
    every loss-relevant option set explicitly. Returns (trainer, info)."""
    import torch
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    chosen, info = prepare_rows(rows, tokenizer, cfg, desc, repeat)
    steps = info["planned_steps"]
    args = SFTConfig(
        output_dir=str(out_dir), per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=int(cfg.warmup_ratio * steps), weight_decay=cfg.weight_decay,
        num_train_epochs=1 if cfg.token_budget > 0 else cfg.epochs, max_steps=cfg.max_steps, seed=cfg.seed,
        data_seed=cfg.seed, max_length=cfg.max_length, bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps or max(1, steps // 50),
        save_strategy="epoch" if cfg.save_epochs else "steps" if cfg.save_steps > 0 else "no",
        save_steps=max(cfg.save_steps, 1),
        include_num_input_tokens_seen="non_padding",
        save_total_limit=cfg.save_total_limit, report_to=cfg.report_to, disable_tqdm=True,
        dataloader_num_workers=0, completion_only_loss=True, assistant_only_loss=False,
        packing=cfg.packing, padding_free=cfg.packing, loss_type="nll",
        train_sampling_strategy="group_by_length" if cfg.group_by_length and not cfg.packing else "random",
        deepspeed=cfg.deepspeed, use_cpu=not torch.cuda.is_available(),
    )
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=cfg.lora_targets, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(chosen),
                         processing_class=tokenizer, peft_config=peft_config,
                         callbacks=[_progress_callback(steps, desc), _checkpoint_callback(cfg.save_minutes)])
    trainer.remove_callback(PrinterCallback)  # the rich bar shows progress; logs go to train_log.json
    return trainer, info


def _complete(ckpt: Path) -> bool:
    """The Trainer writes trainer_state.json last: a checkpoint without a readable one was cut short."""
    try:
        json.loads((ckpt / "trainer_state.json").read_text())
        return True
    except (OSError, ValueError):
        return False


def _last_checkpoint(work: Path, main: bool = True) -> str | None:
    """The newest complete checkpoint; ones a kill cut short are removed (by the main process only:
    every rank of a multi-process run looks, and two removing the same tree collide)."""
    ckpts = sorted(work.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    while ckpts and not _complete(ckpts[-1]):
        if main:
            log.warning("removing incomplete checkpoint %s", ckpts[-1])
            shutil.rmtree(ckpts[-1], ignore_errors=True)
        ckpts.pop()
    return str(ckpts[-1]) if ckpts else None


def _rerun_note(work: Path, desc: str) -> str:
    """What rerunning the same command will do, from the complete checkpoints on disk."""
    ckpts = [p for p in work.glob("checkpoint-*") if _complete(p)]
    if not ckpts:
        return f"no checkpoint was saved yet, so rerunning the same command starts {desc} over from step 0"
    last = max(ckpts, key=lambda p: int(p.name.split("-")[1]))
    return f"rerun the same command to resume from {last.name} ({last})"


@contextmanager
def _stop_on_signal(trainer, work: Path, desc: str):
    """SIGINT (Ctrl-C) or SIGTERM (Slurm preemption) during training: finish the current step, save
    a checkpoint, stop, and raise `Interrupted` saying what a rerun will do. Every rank agrees (one
    signalled rank stops them all); a second signal stops at once."""
    import signal
    import threading

    import torch
    from transformers import TrainerCallback

    class SaveAndStopOnSignal(TrainerCallback):
        received: str | None = None  # this process's signal
        stopped = False  # the run stopped for a signal (of any rank)

        def on_train_begin(self, args, state, control, **kw):
            if state.is_world_process_zero:
                log.info("%s: from step %d of %d (Ctrl-C or SIGTERM saves a checkpoint, then stops)", desc,
                         state.global_step, state.max_steps)

        def on_step_end(self, args, state, control, **kw):
            stop = self.received is not None
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                flag = torch.tensor([int(stop)], device=args.device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                stop = bool(flag.item())
            if stop and not self.stopped:
                self.stopped = control.should_save = control.should_training_stop = True

    stopper = SaveAndStopOnSignal()
    trainer.add_callback(stopper)

    def handler(signum, frame):
        if stopper.received is not None:  # a second signal: stop now (the checkpoint may be cut short)
            raise KeyboardInterrupt
        stopper.received = signal.Signals(signum).name
        log.warning("%s: %s received: saving a checkpoint after this step, then stopping (again to stop at "
                    "once)", desc, stopper.received)

    main = threading.current_thread() is threading.main_thread()
    before = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"{desc} stopped at once (a second signal); {_rerun_note(work, desc)}") from None
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    state = trainer.state
    if (stopper.stopped or stopper.received) and not (state.max_steps and state.global_step >= state.max_steps):
        raise Interrupted(f"{desc} stopped by {stopper.received or 'a signal to another rank'} at step "
                          f"{state.global_step} of {state.max_steps}; {_rerun_note(work, desc)}")


def fit(model, tokenizer, rows: list[dict], out_dir: str | Path, cfg: TrainConfig, *, desc: str = "train",
        repeat: bool = True) -> dict:
    """Train, resuming from the last complete checkpoint in `out_dir/checkpoints` if there is one;
    save the model (LoRA adapters merged when `merge_lora`), the tokenizer and `train_log.json`."""
    import torch

    out_dir = Path(out_dir)
    work = out_dir / "checkpoints"
    trainer, info = make_trainer(model, tokenizer, rows, work, cfg, desc=desc, repeat=repeat)
    clock = next(c for c in trainer.callback_handler.callbacks if type(c).__name__ == "WallClockCheckpoints")
    resume = _last_checkpoint(work, main=trainer.is_world_process_zero())
    if resume:
        log.info("%s: resuming from %s", desc, resume)
        saved = Path(resume) / CLOCK
        clock.before = json.loads(saved.read_text())["seconds"] if saved.is_file() else 0.0
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    clock.start = clock.last = time.monotonic()
    zero3 = trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3
    if zero3 and cfg.lora and cfg.merge_lora:
        raise UserError("train.lora with train.merge_lora=true cannot merge ZeRO-3-sharded weights; set "
                        "train.merge_lora=false (the adapters are saved) or use ZeRO stage 1 or 2")
    with _stop_on_signal(trainer, work, desc):  # Ctrl-C / SIGTERM: a checkpoint, then `Interrupted`
        trainer.train(resume_from_checkpoint=resume)
    seconds = clock.elapsed()
    if zero3:
        # Each rank holds a shard of every weight: gathering the full ones is a collective (all ranks),
        # and rank 0 writes them (needs stage3_gather_16bit_weights_on_model_save, as the recipes set).
        trainer.save_model(str(out_dir))
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        # Sharding ends with training: without this, a later load in this process (the checkpoint
        # selection on rank 0) would partition the model across ranks that have already exited.
        unset_hf_deepspeed_config()
    if not trainer.is_world_process_zero():
        return {}
    if zero3:
        (out_dir / "training_args.bin").unlink(missing_ok=True)
    else:
        final = trainer.model
        if cfg.lora and cfg.merge_lora:
            final = final.merge_and_unload()
        final.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    model.generation_config.save_pretrained(str(out_dir))
    import resource

    peak = (torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    loss_curve = [{"step": h["step"], "loss": h["loss"], "lr": h.get("learning_rate")}
                  for h in trainer.state.log_history if "loss" in h]
    tokens = int(trainer.state.num_input_tokens_seen)
    stats = {**info, "tokens": tokens, "tokens_note": "tokens trained on (prompt + completion, no padding), "
             "counted over the whole run including earlier resumed parts",
             "steps": trainer.state.global_step, "seconds": round(seconds, 1), "resumed_from": resume,
             "tokens_per_s": round(tokens / max(seconds, 1e-9)),
             "train_loss": sum(p["loss"] for p in loss_curve) / len(loss_curve) if loss_curve else None,
             "final_loss": loss_curve[-1]["loss"] if loss_curve else None,
             "peak_memory_gib": round(peak, 3), "peak_memory_kind": "cuda" if torch.cuda.is_available() else "rss",
             "config": asdict(cfg), "loss_curve": loss_curve}
    write_json(out_dir / "train_log.json", stats)
    return stats


def load_model(path: str | Path, label: str = "train.model"):
    tokenizer = load_tokenizer(path, label)
    if not tokenizer.chat_template:
        raise UserError(f"{label}={path}: its tokenizer has no chat template (use an instruct/chat model's "
                        "tokenizer, or add a chat_template to tokenizer_config.json)")
    return load_causal_lm(path, label), tokenizer


DATA_FIELDS = {"prompt": list, "completion": list}


def read_dataset(path: str | Path) -> list[dict]:
    """A dataset from `build`: conversational prompt-completion rows, checked with file:line."""
    rows = read_jsonl(path, what="training examples")
    check_rows(rows, path, DATA_FIELDS, fix="expected rows of `critiquelab build` "
               "({\"prompt\": [messages], \"completion\": [messages]})")
    for row, line in zip(rows, rows.lines, strict=True):
        for part in ("prompt", "completion"):
            msgs = row[part]
            if not msgs or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                   and isinstance(m.get("content"), str) for m in msgs):
                raise UserError(f"{path}:{line}: field {part!r} must be a non-empty list of "
                                "{\"role\": ..., \"content\": \"...\"} messages")
    return rows


def _check_inputs(cfg: TrainConfig, need_model: bool = True) -> list[dict]:
    """Everything that can fail before the first step fails here, with a clear message."""
    problems = [f"train.{k} is required" for k in ("model", "data", "output_dir") if not getattr(cfg, k)]
    if problems:
        raise UserError("; ".join(problems))
    if need_model:
        check_model(cfg.model, "train.model")
    if cfg.lora and cfg.select_best_on:
        raise UserError("train.select_best_on works with full fine-tuning (or lora with merge_lora and save_steps=0)")
    if cfg.select_best_on and cfg.save_steps <= 0 and not cfg.save_epochs:
        raise UserError("train.select_best_on needs train.save_steps > 0 or train.save_epochs=true (the "
                        "checkpoints to choose from)")
    if cfg.deepspeed and not Path(cfg.deepspeed).is_file():
        raise UserError(f"train.deepspeed={cfg.deepspeed}: file not found")
    return read_dataset(cfg.data)


class _CharTokenizer:
    """Stands in for a tokenizer that cannot be loaded (offline dry run): ~3.5 characters a token."""

    def apply_chat_template(self, messages, **kw):
        return [0] * (sum(len(m["content"]) for m in messages) * 2 // 7 + 4 * len(messages))

    def __call__(self, text):
        return {"input_ids": [0] * (len(text) * 2 // 7)}


def plan(cfg: TrainConfig, examples: int | None = None) -> dict:
    """Dry run: the effective config, world size, steps and tokens, without loading the model.

    Without the dataset (or the tokenizer) at hand, it says what is missing and plans from
    `examples` rows of the median CFT length it assumes instead."""
    from transformers import AutoTokenizer

    from critiquelab.gguf import resolve

    missing = []
    try:
        rows = _check_inputs(cfg, need_model=False)
    except UserError as e:
        if not cfg.data or Path(cfg.data).exists():
            raise
        if examples is None:
            raise UserError(f"{e}; to plan without the dataset, pass --examples N (its number of rows)") from None
        missing.append(f"train.data: {e}")
        rows = [{"prompt": [{"role": "user", "content": "x" * 2400}],
                 "completion": [{"role": "assistant", "content": "x" * 1600}]}] * examples
    try:
        tokenizer, counted = AutoTokenizer.from_pretrained(resolve(cfg.model, "train.model") or cfg.model), "tokenizer"
    except Exception:  # not cached, offline, not a model: estimate
        tokenizer, counted = _CharTokenizer(), "estimated (~3.5 characters a token; the tokenizer is not available)"
        missing.append(f"train.model={cfg.model}: tokenizer not available here")
    _, info = prepare_rows(rows, tokenizer, cfg, "dry-run", repeat=True)
    return {"config": asdict(cfg), **info, "token_counts": counted, "missing": missing,
            **({"assumed_examples": examples} if missing and examples else {})}


def plan_line(p: dict) -> str:
    """`train --dry-run`'s one-line summary of `plan`'s result."""
    missing = f"; MISSING: {' | '.join(p['missing'])}" if p["missing"] else ""
    return (f"dry run: world size {p['world_size']}, global batch {p['global_batch']}, "
            f"{p['planned_steps']} steps, {p['examples']} examples, {p['planned_tokens']} tokens{missing}")


def _select_best(work: Path, out: Path, cfg: TrainConfig, world_dir, bench_dir) -> dict:
    from critiquelab.config import EvalConfig
    from critiquelab.evaluate import run_eval

    scores = {}
    ecfg = EvalConfig(benchmarks=[cfg.select_best_on], limit=cfg.select_limit, max_new_tokens=cfg.select_max_new_tokens)
    for ckpt in sorted(work.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        res = run_eval(ckpt, ckpt / "select-eval", ecfg, world_dir=world_dir, bench_dir=bench_dir)
        scores[ckpt.name] = res["benchmarks"][cfg.select_best_on]["accuracy"]
    if not scores:
        return {}
    best = max(scores, key=lambda k: (scores[k], int(k.split("-")[1])))
    dest = out / "best"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(work / best, dest, ignore=shutil.ignore_patterns("optimizer.pt", "scheduler.pt", "rng_state*",
                                                                      "select-eval", "global_step*", "latest",
                                                                      "zero_to_*.py"))
    from critiquelab.sources import BENCHMARKS

    leak = cfg.select_best_on in BENCHMARKS  # a reported test set: selecting on it leaks test information
    if leak:
        log.warning("selecting the checkpoint on %s, which is also a reported benchmark", cfg.select_best_on)
    summary = {"checkpoint": best, "benchmark": cfg.select_best_on, "accuracy": scores[best], "all": scores,
               "overlaps_reported_benchmark": leak}
    write_json(dest / "critiquelab_best.json", summary)
    return summary


def _fingerprint(cfg: TrainConfig) -> str:
    """What the output is made from: the settings (not where it goes) and the data's content."""
    settings = {k: v for k, v in key_of(cfg).items() if k not in ("output_dir", "report_to", "logging_steps")}
    return stable_hash({"train": settings, "data": sha256_file(cfg.data)})


def run_train(cfg: TrainConfig, *, desc: str = "train", world_dir=None, bench_dir=None,
              overwrite: bool = False, out_label: str = "train.output_dir") -> dict:
    """Fine-tune `cfg.model` on `cfg.data` into `cfg.output_dir` (resumable; see the module doc);
    errors about the output directory name it as `out_label` (`--out` from the command line)."""
    from contextlib import nullcontext

    rows = _check_inputs(cfg)
    if cfg.select_best_on:
        from critiquelab.sources import load_benchmark

        load_benchmark(cfg.select_best_on, bench_dir=bench_dir, world_dir=world_dir, limit=1)
    out_dir = Path(cfg.output_dir)
    fingerprint = _fingerprint(cfg)
    main = int(os.environ.get("RANK", "0")) == 0
    claim = output_dir(out_dir, "model", fingerprint=fingerprint, overwrite=overwrite, label=out_label) \
        if main else nullcontext((out_dir, "done" if (read_marker(out_dir) or {}).get("complete") else "resume"))
    with claim as (out_dir, state):
        if state == "done" and (out_dir / "train_log.json").is_file():
            log.info("%s: %s already holds this finished model; nothing to do", desc, out_dir)
            shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
            return read_json(out_dir / "train_log.json")
        model, tokenizer = load_model(cfg.model)
        stats = fit(model, tokenizer, rows, out_dir, cfg, desc=desc)
        if not stats:  # not the main process
            return stats
        if cfg.select_best_on:
            stats["selection"] = _select_best(out_dir / "checkpoints", out_dir, cfg, world_dir, bench_dir)
            write_json(out_dir / "train_log.json", stats)
        mark_complete(out_dir)
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # after: a kill here loses nothing
    return stats


def summary_line(stats: dict, out: str | Path) -> str:
    """`train`'s one-line summary of `run_train`'s result (empty in a worker process)."""
    if not stats:
        return "done (worker process)"
    return (f"trained {stats['steps']} steps on {stats['tokens']} tokens (loss {stats['final_loss']:.3f}, "
            f"{stats['tokens_per_s']} tokens/s) -> {out}")
