"""Tiny dataset for the client checks, made by critiquelab itself (main venv).

world -> tiny from-scratch Qwen2 base -> synthetic noisy solutions -> checker critiques ->
build with every export. Writes OUT/{world,base,solutions.jsonl,critique,dataset}.

    .venv/bin/python checks/clients/make_data.py runs/clients/data
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from critiquelab.build import run_build  # noqa: E402
from critiquelab.config import BuildConfig, CritiqueConfig, RunConfig, SampleConfig, load_config  # noqa: E402
from critiquelab.critique import run_critique  # noqa: E402
from critiquelab.pretrain import pretrain  # noqa: E402
from critiquelab.sample import run_sample  # noqa: E402
from critiquelab.world import write_world  # noqa: E402

# The sizes of tests/conftest.py's tiny_run_config (less pretraining: the checks need a model, not a good one).
TINY = ["world.n_pretrain=400", "world.n_train=60", "world.n_validation=20", "world.n_test=30",
        "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "model.num_kv_heads=1",
        "model.intermediate_size=64", "model.vocab_size=300",
        "pretrain.tokens=8000", "pretrain.batch_size=4", "pretrain.lr=1e-2"]  # a few steps: any weights do
EXPORTS = ["alpaca", "messages", "hf", "parquet", "trl_text"]
# cft rows have no system message, sft_reference rows have one, the mix has both kinds
METHODS = ["cft", "sft_reference", "cft_sft_mix"]


def main(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)  # every stage from scratch: seconds, and no stale outputs
    cfg = load_config(RunConfig, None, TINY)
    write_world(cfg.world, out / "world")
    pretrain(out / "world", out / "base", cfg.model, cfg.pretrain)
    run_sample(out / "world" / "train.jsonl", out / "solutions.jsonl",
               SampleConfig(source="synthetic", n_problems=16, error_rate=0.5))
    run_critique(out / "solutions.jsonl", out / "critique", CritiqueConfig(teacher="checker"))
    res = run_build(out / "solutions.jsonl", out / "critique" / "critiques.jsonl", out / "dataset",
                    BuildConfig(methods=METHODS, exports=EXPORTS, decontaminate=False, mix_ratio=0.5))
    print(f"dataset: {res['counts']} exports: {sorted(res['exports'])} -> {out / 'dataset'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/clients/data"))
