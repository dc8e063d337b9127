"""ms-swift on the `messages` export (run in ms-swift's venv).

1. ms-swift's own pipeline (`SwiftSft(args)._prepare_dataset()`: dataset loading, template
   encoding) on every `dataset/messages/<method>.jsonl` with the documented settings: every encoded
   example must be exactly the model's chat-template rendering of one row (no default system
   prompt inserted) with the prompt masked (-100) and every completion token trained.
2. A control: the same template without `--system ''` must be caught inserting its default
   system prompt into the rows that have none.
3. `swift sft` with the same arguments on the CFT+SFT mix: 2 full fine-tuning steps on CPU, finite loss.

    python check_swift.py --data DATASET_DIR --model BASE_DIR --work WORK_DIR
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
from common import Expected, emit, finite, parse_args, read_rows  # noqa: E402

METHOD = "cft_sft_mix"  # rows with and without a system message
# the tiny model's directory name matches no registered model, so its type is named; qwen2_5 is
# the ChatML template a Qwen2.5 model gets by default (default system "You are Qwen, ...")
SETTINGS = ["--model_type", "qwen2", "--template", "qwen2_5", "--system", ""]


def sft_args(data: Path, model: Path, out: Path, settings: list[str], dataset: Path | None = None) -> list[str]:
    return ["--model", str(model), *settings,
            "--dataset", str(dataset or data / "messages" / f"{METHOD}.jsonl"), "--split_dataset_ratio", "0",
            "--tuner_type", "full", "--torch_dtype", "float32", "--max_length", "512",
            "--max_steps", "2", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
            "--learning_rate", "1e-4", "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none",
            "--dataloader_num_workers", "0", "--dataset_num_proc", "1", "--check_model", "false",
            "--seed", "0", "--output_dir", str(out)]


def encoded(args: list[str]):
    from swift.pipelines.train.sft import SwiftSft

    train, _ = SwiftSft(args)._prepare_dataset()
    return [(train[i]["input_ids"], train[i]["labels"]) for i in range(len(train))]


def main() -> int:
    a = parse_args()
    import swift
    from transformers import AutoTokenizer

    result = {"tool": "ms-swift", "version": swift.__version__, "export": f"messages/{METHOD}.jsonl",
              "settings": " ".join(x if x else "''" for x in SETTINGS)}
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(a.model)
    expected = Expected(tok, read_rows(a.data / f"{METHOD}.jsonl"))
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    # the control first, in case an override leaks into the registered template
    control = expected.check_all(encoded(sft_args(a.data, a.model, a.work / "control", SETTINGS[:4])))
    result["masking"] = {}
    for path in sorted((a.data / "messages").glob("*.jsonl")):  # every variant
        result["masking"][path.name] = Expected(tok, read_rows(a.data / path.name)).check_all(
            encoded(sft_args(a.data, a.model, a.work / "encode", SETTINGS, path)))
    args = sft_args(a.data, a.model, a.work / "out", SETTINGS)
    result["control_without_system_override"] = {"caught": not control["ok"] and control["bad"] > 0,
                                                  "first_error": control["first_error"]}

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "USE_HF": "1", "CUDA_VISIBLE_DEVICES": "",
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("NPROC_PER_NODE", None)  # one process: no torchrun, no sockets
    cli = Path(sys.executable).parent / "swift"
    proc = subprocess.run([str(cli), "sft", *args], env=env, capture_output=True, text=True, timeout=900)
    (a.work / "train.log").write_text(proc.stdout + proc.stderr)
    logs = sorted((a.work / "out").glob("v*/logging.jsonl"), key=lambda q: q.stat().st_mtime)
    losses = []
    if logs:
        rows = [json.loads(line) for line in logs[-1].read_text().splitlines() if line.strip()]
        losses = [float(r["loss"]) for r in rows if "loss" in r]
    result["train"] = {"rc": proc.returncode, "losses": losses, "finite": finite(losses), "steps": len(losses),
                       "log": str(a.work / "train.log")}
    result["seconds"] = round(time.time() - t0, 1)
    result["ok"] = (all(m["ok"] for m in result["masking"].values()) and result["control_without_system_override"]["caught"]
                    and proc.returncode == 0 and finite(losses) and len(losses) == 2)
    emit(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
