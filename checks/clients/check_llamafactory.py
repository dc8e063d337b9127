"""LLaMA-Factory on the `alpaca` export (run in LLaMA-Factory's venv).

1. LLaMA-Factory's own preprocessing (`get_dataset`, stage sft) of every entry of
   `dataset/alpaca/dataset_info.json`, with the documented settings: every tokenized example must be exactly the
   model's chat-template rendering of one row (no default system prompt inserted) with the prompt
   masked (-100) and every completion token trained.
2. A control: the `qwen` template without `default_system: ""` must be caught inserting its
   default system prompt into the rows that have none (shows the check has teeth).
3. `llamafactory-cli train` on that YAML (the CFT+SFT mix): 2 full fine-tuning steps on CPU, finite loss.

    python check_llamafactory.py --data DATASET_DIR --model BASE_DIR --work WORK_DIR
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Expected, emit, finite, losses_from_state, parse_args, read_rows  # noqa: E402

METHOD = "cft_sft_mix"  # rows with and without a system message


def train_args(data: Path, model: Path, out: Path, **extra) -> dict:
    args = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset_dir": str(data / "alpaca"), "dataset": f"critiquelab_{METHOD}",
        "template": "qwen", "default_system": "", "cutoff_len": 512, "overwrite_cache": True,
        "output_dir": str(out), "overwrite_output_dir": True, "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1, "learning_rate": 1e-4, "max_steps": 2, "logging_steps": 1,
        "save_strategy": "no", "report_to": "none", "use_cpu": True, "bf16": False, "fp16": False,
        "dataloader_num_workers": 0, "preprocessing_num_workers": None, "seed": 0,
    }
    args.update(extra)
    return {k: v for k, v in args.items() if v is not None}


def tokenized(args: dict):
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args(dict(args))
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    ds = get_dataset(template, model_args, data_args, training_args, stage="sft", **module)["train_dataset"]
    return [(ex["input_ids"], ex["labels"]) for ex in ds]


def main() -> int:
    a = parse_args()
    import llamafactory
    import yaml
    from transformers import AutoTokenizer

    result = {"tool": "llamafactory", "version": llamafactory.__version__, "export": f"alpaca/{METHOD}.json",
              "settings": "template: qwen, default_system: \"\""}
    t0 = time.time()
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    tok = AutoTokenizer.from_pretrained(a.model)
    expected = Expected(tok, read_rows(a.data / f"{METHOD}.jsonl"))
    args = train_args(a.data, a.model, a.work / "out")
    # the control first: LLaMA-Factory's templates are module globals that `default_system` overrides
    control = expected.check_all(tokenized({**args, "default_system": None}))
    result["masking"] = {}
    for entry, info in json.loads((a.data / "alpaca" / "dataset_info.json").read_text()).items():
        method = Path(info["file_name"]).stem  # every entry of dataset_info.json, as LLaMA-Factory reads it
        result["masking"][entry] = Expected(tok, read_rows(a.data / f"{method}.jsonl")).check_all(
            tokenized({**args, "dataset": entry}))
    result["control_qwen_without_default_system"] = {
        "caught": not control["ok"] and control["bad"] > 0, "first_error": control["first_error"]}

    cfg = a.work / "train.yaml"
    cfg.write_text(yaml.safe_dump(args, sort_keys=False))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "FORCE_TORCHRUN": "0",
           "DISABLE_VERSION_CHECK": "0", "WANDB_DISABLED": "true", "TOKENIZERS_PARALLELISM": "false"}
    cli = Path(sys.executable).parent / "llamafactory-cli"
    proc = subprocess.run([str(cli), "train", str(cfg)], env=env, capture_output=True, text=True, timeout=900)
    (a.work / "train.log").write_text(proc.stdout + proc.stderr)
    state = a.work / "out" / "trainer_state.json"
    losses = losses_from_state(state) if state.is_file() else []
    result["train"] = {"rc": proc.returncode, "losses": losses, "finite": finite(losses),
                       "steps": len(losses), "log": str(a.work / "train.log")}
    result["seconds"] = round(time.time() - t0, 1)
    result["ok"] = (all(m["ok"] for m in result["masking"].values()) and result["control_qwen_without_default_system"]["caught"]
                    and proc.returncode == 0 and finite(losses) and len(losses) == 2)
    emit(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
