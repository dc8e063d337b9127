"""TRL on the `hf` and `parquet` exports (run in critiquelab's own venv).

For each: TRL's own `SFTTrainer` preprocessing (chat template on the conversational prompt and
completion) and data collator must give, for every row, exactly the model's chat-template
rendering with labels -100 over the prompt and the completion trained; then 2 training steps on
CPU with a finite loss. A control: the flat `trl_text` export (plain strings, no chat template)
must be caught by the same check.

    python check_trl.py --data DATASET_DIR --model BASE_DIR --work WORK_DIR
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Expected, emit, finite, parse_args, read_rows  # noqa: E402

METHOD = "cft_sft_mix"  # rows with and without a system message


def run(name: str, dataset, model_dir: Path, expected: Expected, out: Path, train: bool = True) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = SFTConfig(output_dir=str(out), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-4,
                    logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, max_length=512,
                    dataloader_num_workers=0, dataset_num_proc=None, seed=0, bf16=False, fp16=False)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=cfg,
                         train_dataset=dataset, processing_class=tok)
    examples = []
    for ex in trainer.train_dataset:  # TRL's tokenization, then its collator builds the labels
        batch = trainer.data_collator([ex])
        examples.append((batch["input_ids"][0].tolist(), batch["labels"][0].tolist()))
    masking = expected.check_all(examples)
    if not train:
        return {"export": name, "masking": masking, "ok": masking["ok"]}
    trainer.train()
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return {"export": name, "masking": masking,
            "train": {"losses": losses, "finite": finite(losses), "steps": len(losses)},
            "ok": masking["ok"] and finite(losses) and len(losses) == 2}


def main() -> int:
    a = parse_args()
    import trl
    from datasets import load_dataset, load_from_disk
    from transformers import AutoTokenizer

    t0 = time.time()
    shutil.rmtree(a.work, ignore_errors=True)
    expected = Expected(AutoTokenizer.from_pretrained(a.model), read_rows(a.data / f"{METHOD}.jsonl"))
    hf = load_from_disk(str(a.data / "hf"))
    runs = [  # every split's preprocessing; the mix trains
        run(f"hf/ (split {m})", hf[m], a.model, Expected(expected.tokenizer, read_rows(a.data / f"{m}.jsonl")),
            a.work / "hf" / m, train=False) for m in hf if m != METHOD]
    runs += [
        run(f"hf/ (split {METHOD})", hf[METHOD], a.model, expected, a.work / "hf" / METHOD),
        run(f"parquet/{METHOD}.parquet",
            load_dataset("parquet", data_files=str(a.data / "parquet" / f"{METHOD}.parquet"))["train"],
            a.model, expected, a.work / "parquet"),
    ]
    # the control: plain strings (trl_text) get no chat template, so the check must reject them
    control = run(f"trl_text/{METHOD}.jsonl", load_dataset("json", data_files=str(
        a.data / "trl_text" / f"{METHOD}.jsonl"))["train"], a.model, expected, a.work / "control", train=False)
    caught = not control["masking"]["ok"] and control["masking"]["bad"] > 0
    result = {"tool": "trl", "version": trl.__version__, "runs": runs,
              "control_trl_text_without_chat_template": {"caught": caught,
                                                         "first_error": control["masking"]["first_error"]},
              "seconds": round(time.time() - t0, 1), "ok": all(r["ok"] for r in runs) and caught}
    emit(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
