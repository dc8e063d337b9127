"""Inputs for the view tests (unit and browser): real stage outputs on the tiny world, and critiques
holding what a model may write (markup, script, control characters, 100 KB)."""

from __future__ import annotations

import shutil
from pathlib import Path

from critiquelab.config import CriticConfig, CritiqueConfig, EvalConfig, SampleConfig
from critiquelab.critique import run_critique
from critiquelab.io import read_jsonl, write_json, write_jsonl
from critiquelab.sample import run_sample

TITLE_PAYLOAD = "document.title='pwned'"

# name -> a critique a model may write; each one, executed, would set window.pwned or the title
PAYLOADS = {
    "script": "<script>window.pwned='script';" + TITLE_PAYLOAD + "</script>",
    "img_onerror": "<img src=x onerror=\"window.pwned='img';" + TITLE_PAYLOAD + "\">",
    "textarea": "</textarea><script>window.pwned='textarea'</script><textarea>",
    "script_close": "</script><script>window.pwned='close';" + TITLE_PAYLOAD + "</script>",
    "json_break": "\"}]}'; window.pwned='json'; //\\u003c/script\\u003e",
    "html_comment": "<!-- a comment --> visible <!-- <script>window.pwned='comment'</script> -->",
    "svg": "<svg onload=\"window.pwned='svg'\"><a href=\"javascript:window.pwned='href'\">link</a></svg>",
    "iframe": "<iframe srcdoc=\"<script>parent.pwned='iframe'</script>\"></iframe>",
    "long_line": "Step 1 is wrong " + "9" * 30000,
    "rtl": "\u202eright-to-left override\u202c مرحبا بالعالم שלום עולם Conclusion: wrong [END]",
    "nul": "before\x00after\x07bell\x1bescape",
    "big": ("Step 1: 2 + 2 = 4 is correct. " * 3400) + "<script>window.pwned='big'</script> the end",
}


def two_teachers(world: Path, out: Path, n: int) -> tuple[Path, Path, Path]:
    """Solutions, the terse checker's store, and a second teacher's (the recompute style, wrong on a
    quarter of its verdicts): (solutions, store 1, store 2)."""
    sols = out / "solutions.jsonl"
    run_sample(world / "train.jsonl", sols, SampleConfig(source="synthetic", n_problems=n, n_per_problem=2,
                                                          error_rate=0.5))
    run_critique(sols, out / "critique", CritiqueConfig())
    run_critique(sols, out / "critique2", CritiqueConfig(checker_style="recompute", checker_noise=0.25))
    return sols, out / "critique" / "critiques.jsonl", out / "critique2" / "critiques.jsonl"


def payload_store(sols: Path, store: Path, out: Path) -> tuple[Path, dict]:
    """A copy of a critique store with PAYLOADS as the critiques of its first rows; returns it and
    payload name -> the solution id whose critique holds it."""
    rows = list(read_jsonl(store))
    where = {}
    for row, (name, text) in zip(rows, PAYLOADS.items(), strict=False):
        row["critique"] = f"XSS-{name}: {text}"
        where[name] = row["id"]
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "critiques.jsonl", rows)
    return out / "critiques.jsonl", where


def run_dir(world, model, root):
    """A run directory laid out as an experiment's: world, data (solutions, a critique store), a critic
    of held-out solutions and an evaluation, cells.json."""
    from conftest import checker_critiqued
    from critiquelab.critic import run_eval_critic
    from critiquelab.evaluate import run_eval

    shutil.copytree(world, root / "world")
    checker_critiqued(world, root / "data" / "default", 10)
    (root / "data" / "default" / "default").mkdir()  # data/<source>/<teacher>/critique/
    (root / "data" / "default" / "critique").rename(root / "data" / "default" / "default" / "critique")
    run_sample(world / "validation.jsonl", root / "critic" / "solutions.jsonl",
               SampleConfig(source="synthetic", n_problems=8, n_per_problem=2, error_rate=0.5))
    run_eval_critic(model, root / "critic" / "solutions.jsonl", root / "critic" / "base", CriticConfig(max_new_tokens=16))
    run_eval(model, root / "eval" / "base", EvalConfig(limit=8, max_new_tokens=24), world_dir=world)
    write_json(root / "cells.json", [{"name": "base", "method": "base", "seed": None, "model": "default",
                                      "source": None, "teacher": None, "data_size": None, "status": "ok"}])
    return root
