"""Fine-tuning with TRL's SFTTrainer: SFT and CFT are the same trainer on different data.

Inputs: a base model dir and a dataset JSONL written by `build` (TRL conversational
prompt-completion rows). Output: a model dir that `AutoModelForCausalLM.from_pretrained` loads,
plus `train_log.json` (loss curve, tokens, timings). The loss is on the completion only
(`completion_only_loss=True`, set explicitly) and every method gets the same token budget:
examples are taken (cycling when the set is small) until their tokens reach `token_budget`.

    critiquelab train --model runs/base --data runs/demo/dataset/cft.jsonl --out runs/demo/models/cft

This is the only module that imports TRL.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from pathlib import Path

from critiquelab.config import TrainConfig
from critiquelab.io import UserError, read_jsonl, write_json

__all__ = ["fit", "make_trainer", "load_model", "run_train", "select_by_budget"]

log = logging.getLogger(__name__)


def _count_tokens(tokenizer, row: dict) -> int:
    if "text" in row:
        return len(tokenizer(row["text"])["input_ids"])
    ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=False)
    return len(ids)


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


def _progress_callback(total_steps: int, desc: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.progress = Progress(TextColumn(f"[bold]{desc}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                     transient=False)
            self.progress.start()
            self.task = self.progress.add_task(desc, total=total_steps, info="")

        def on_step_end(self, args, state, control, **kw):
            self.progress.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.progress.update(self.task, info=f"loss {logs['loss']:.3f}")

        def on_train_end(self, args, state, control, **kw):
            self.progress.stop()

    return RichProgress()


def make_trainer(model, tokenizer, rows: list[dict], out_dir: str | Path, *, lr: float, batch_size: int,
                 token_budget: int, warmup_ratio: float = 0.1, weight_decay: float = 0.0, seed: int = 0,
                 max_length: int = 512, grad_accum: int = 1, lr_scheduler: str = "cosine", bf16: bool = False,
                 group_by_length: bool = True, desc: str = "train", repeat: bool = True):
    """An SFTTrainer over `rows` ({"text"} for LM, or conversational prompt/completion) cut to the
    token budget, with every loss-relevant option set explicitly. Returns (trainer, info)."""
    import torch
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    if not rows:
        raise UserError(f"{desc}: the training set is empty")
    lengths = [_count_tokens(tokenizer, r) for r in rows]
    too_long = sum(n > max_length for n in lengths)
    if too_long:
        log.warning("%s: %d of %d examples exceed max_length=%d and are truncated", desc, too_long,
                    len(rows), max_length)
    chosen, tokens = select_by_budget(rows, lengths, token_budget, seed, repeat)
    steps = max(1, -(-len(chosen) // (batch_size * grad_accum)))
    args = SFTConfig(
        output_dir=str(out_dir), per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum, learning_rate=lr, lr_scheduler_type=lr_scheduler,
        warmup_steps=int(warmup_ratio * steps), weight_decay=weight_decay, num_train_epochs=1, seed=seed,
        data_seed=seed, max_length=max_length, bf16=bf16, logging_steps=max(1, steps // 50),
        save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        completion_only_loss=True, assistant_only_loss=False, packing=False, padding_free=False,
        loss_type="nll", train_sampling_strategy="group_by_length" if group_by_length else "random",
        dataset_num_proc=None, use_cpu=not torch.cuda.is_available(),
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(chosen),
                         processing_class=tokenizer, callbacks=[_progress_callback(steps, desc)])
    trainer.remove_callback(PrinterCallback)  # the rich bar shows progress; logs go to train_log.json
    info = {"examples": len(chosen), "unique_examples": len({id(r) for r in chosen}), "tokens": tokens,
            "too_long": too_long}
    return trainer, info


def fit(model, tokenizer, rows: list[dict], out_dir: str | Path, **kwargs) -> dict:
    """Train (see `make_trainer` for the options) and save model, tokenizer and `train_log.json`."""
    out_dir = Path(out_dir)
    trainer, info = make_trainer(model, tokenizer, rows, out_dir, **kwargs)
    t0 = time.time()
    result = trainer.train()
    seconds = time.time() - t0
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    model.generation_config.save_pretrained(str(out_dir))
    loss_curve = [{"step": h["step"], "loss": h["loss"], "lr": h.get("learning_rate")}
                  for h in trainer.state.log_history if "loss" in h]
    stats = {**info, "steps": trainer.state.global_step, "seconds": round(seconds, 1),
             "tokens_per_s": round(info["tokens"] / max(seconds, 1e-9)), "train_loss": result.training_loss,
             "loss_curve": loss_curve}
    write_json(out_dir / "train_log.json", stats)
    return stats


def load_model(path: str | Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: not a model directory (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    return model, tokenizer


def run_train(model_dir: str | Path, data: str | Path, out_dir: str | Path, cfg: TrainConfig,
              desc: str = "train") -> dict:
    """Fine-tune a copy of `model_dir` on `data`; write to `out_dir` atomically."""
    import os

    rows = read_jsonl(data)
    for i, r in enumerate(rows, start=1):
        if not ("prompt" in r and "completion" in r):
            raise UserError(f"{data}:{i}: expected 'prompt' and 'completion' fields")
    model, tokenizer = load_model(model_dir)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    stats = fit(model, tokenizer, rows, tmp, lr=cfg.lr, batch_size=cfg.batch_size,
                token_budget=cfg.token_budget, warmup_ratio=cfg.warmup_ratio,
                weight_decay=cfg.weight_decay, seed=cfg.seed, max_length=cfg.max_length,
                grad_accum=cfg.grad_accum, lr_scheduler=cfg.lr_scheduler, bf16=cfg.bf16,
                group_by_length=cfg.group_by_length, desc=desc)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return stats
