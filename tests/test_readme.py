"""The README's end-to-end block runs as written (at test sizes) on a from-scratch base with a
local teacher served by `transformers serve` on 127.0.0.1, and its results are not garbage."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port

REPO = Path(__file__).resolve().parents[1]
SMALL = ["world.n_pretrain=400", "world.n_train=60", "world.n_validation=20", "world.n_test=30",
         "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "model.num_kv_heads=1",
         "model.intermediate_size=64", "model.vocab_size=300", "pretrain.tokens=80000", "pretrain.batch_size=4",
         "pretrain.lr=1e-2", "sample.n_problems=8", "train.token_budget=6000", "train.batch_size=8",
         "eval.limit=10", "critique.max_tokens=48", "critic.max_new_tokens=64",
         "build.require_verdict=false"]  # (an 80K-token base writes no verdict; the README's 2M-token base does)


def readme_block() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("From a problems file to a trained critic and its evaluation, offline")
    return re.search(r"```bash\n(.*?)```", text[start:], re.S).group(1)


def at_test_size(block: str, port: int) -> str:
    """The block with the test's sizes appended to every critiquelab command (the last value of a
    key wins) and a free port."""
    lines, out = block.replace("\\\n", " ").splitlines(), []
    for line in lines:
        line = line.split("  #")[0].rstrip() if line.lstrip().startswith("critiquelab") else line
        if line.lstrip().startswith("critiquelab"):
            line += " " + " ".join(SMALL)
        out.append(line.replace("PORT=8000", f"PORT={port}"))
    return "\n".join(out)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README block waits for the server with curl")
def test_the_readme_block_runs_and_its_results_are_not_garbage(tmp_path):
    script = ("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"  # the server stops, whatever happens
              + at_test_size(readme_block(), free_port()))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "CRITIQUELAB_CACHE": str(tmp_path / "cache")}
    env.pop("OPENAI_API_KEY", None)  # a local teacher needs no key
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    work = tmp_path / "work"
    base = json.loads((work / "eval/base/results.json").read_text())
    cft = json.loads((work / "eval/cft/results.json").read_text())
    for res in (base, cft):
        assert res["truncated_prompts"] == 0 and res["benchmarks"]["world"]["n"] == 10
    # a CFT model trained on 6K tokens of critiques solves about as the base does (not 0, as a cut prompt made it)
    assert abs(cft["benchmarks"]["world"]["accuracy"] - base["benchmarks"]["world"]["accuracy"]) <= 0.15
    critiques = [json.loads(line) for line in (work / "critique/critiques.jsonl").read_text().splitlines()]
    assert critiques and all(c["status"] == "ok" for c in critiques)  # every item answered by the served teacher
    critic = json.loads((work / "critic/cft/critic.json").read_text())
    heldout = {json.loads(line)["problem_id"] for line in (work / "heldout.jsonl").read_text().splitlines()}
    trained = {json.loads(line)["problem_id"] for line in (work / "solutions.jsonl").read_text().splitlines()}
    assert critic["metrics"]["n"] > 0 and not heldout & trained  # the critic is scored on held-out problems
