"""PRMBench as a critic benchmark: does the critic call a solution right or wrong, and where does
the wrong one go wrong?

Each PRMBench row (`<benchmarks>/prmbench/*.jsonl`, 2,848 rows over 8 `classification`s) gives
two items to judge: the original solution (right) and the modified one (wrong; its first wrong
step is the smallest of `error_steps`). Steps are rendered `Step i: ...` (a step's own leading
number `i.` is dropped), judged through the usual judge path (`critic.run_judge`: any backend,
the CFT prompt, `Conclusion: right/wrong`) and scored:

- balanced accuracy (bootstrap interval, a row's two items resampled together: stats.py),
- F1 on wrong, F1 on right and their mean (same bootstrap),
- first-error-step accuracy on the wrong items: called wrong, and the critique's first
  non-confirming line names the first wrong step (Wilson interval),
- the share without a verdict (Wilson), and all of it per `classification`.

A row whose first wrong step is not one of its steps is an error (file:line); later
`error_steps` past the last step (43 rows of the shipped test split) only count in
`data.error_steps_past_end`: the first wrong step is all that is scored.

    critiquelab eval-critic --critic M --benchmark prmbench --out D [critic.benchmark_limit=20]
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from critiquelab.config import CriticConfig
from critiquelab.critic import critic_metrics, judge_settings, named_step, run_judge
from critiquelab.evaluate import check_backend
from critiquelab.io import UserError, check_rows, output_dir, read_jsonl, stable_hash, write_json, write_jsonl
from critiquelab.llm import fit_counts, fit_note
from critiquelab.sources import PRMBENCH, benchmarks_dir
from critiquelab.stats import balanced_accuracy, bootstrap, wilson_ci

__all__ = ["CRITIC_BENCHMARKS", "load_prmbench", "prmbench_metrics", "render_steps", "run_prmbench",
           "summary_line"]

CRITIC_BENCHMARKS = ("prmbench",)
FIELDS = {"idx": (str, int), "classification": str, "original_question": str, "modified_question": str,
          "original_process": list, "modified_process": list, "error_steps": list}
FIX = "expected PRMBench rows (see ../shared/benchmarks/README.md)"


def _own_number_dropped(step: str, i: int) -> str:
    return re.sub(rf"^\s*{i}\s*[.:)]\s*", "", step).strip()


def render_steps(steps: list[str]) -> str:
    """`Step 1: ...` per step, without a step's own leading number (`"3. ..."`)."""
    return "\n".join(f"Step {i}: {_own_number_dropped(s, i)}" for i, s in enumerate(steps, 1))


def _first_error(r: dict, where: str) -> tuple[int, bool]:
    """The first wrong step of a row, and whether later error steps point past its steps."""
    steps, errors = r["modified_process"], r["error_steps"]
    if not all(isinstance(s, str) for s in [*steps, *r["original_process"]]) or not steps or not r["original_process"]:
        raise UserError(f"{where}: original_process and modified_process must be non-empty lists of text; {FIX}")
    if not errors or not all(isinstance(e, int) and not isinstance(e, bool) for e in errors):
        raise UserError(f"{where}: field 'error_steps' must be a non-empty list of step numbers, got {errors!r}")
    first = min(errors)
    if not 1 <= first <= len(steps):
        raise UserError(f"{where}: error_steps {errors} point past the {len(steps)} steps of modified_process "
                        "(the first wrong step must be one of them, counted from 1); fix or drop the row")
    return first, max(errors) > len(steps)


def load_prmbench(bench_dir=None, limit: int | None = None) -> tuple[list[dict], dict]:
    """Items to judge (two per row: `<classification>-<idx>-original` / `-modified`, with
    `problem_id` the row) and what was read; `limit`: the first N rows of each file."""
    folder = benchmarks_dir(bench_dir) / PRMBENCH
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not files:
        raise UserError(f"{folder}: no PRMBench files (*.jsonl) found (set --benchmarks-dir or CRITIQUELAB_BENCHMARKS)")
    items, seen, past_end = [], {}, 0
    for path in files:
        rows = read_jsonl(path, what="PRMBench rows")
        check_rows(rows, path, FIELDS, fix=FIX)
        for r, line in list(zip(rows, rows.lines, strict=True))[:limit]:
            first, beyond = _first_error(r, f"{path}:{line}")
            past_end += beyond
            row_id = f"{r['classification']}-{r['idx']}"
            if row_id in seen:
                raise UserError(f"{path}:{line}: duplicate row {row_id!r} (also at {seen[row_id]}); every row needs "
                                "its own classification and idx")
            seen[row_id] = f"{path.name}:{line}"
            common = {"problem_id": row_id, "error_kind": r["classification"]}
            items.append({"id": f"{row_id}-original", "question": r["original_question"],
                          "solution": render_steps(r["original_process"]), "correct": True, **common})
            items.append({"id": f"{row_id}-modified", "question": r["modified_question"],
                          "solution": render_steps(r["modified_process"]), "correct": False,
                          "first_error_step": first, **common})
    return items, {"files": len(files), "rows": len(seen), "items": len(items), "error_steps_past_end": past_end}


def _f1(pred: np.ndarray, actual: np.ndarray, w: np.ndarray | None = None):
    """F1 of predicting `actual` (per item, 0/1) by `pred`; with bootstrap weights, one per resample."""
    w = np.ones((1, len(pred))) if w is None else w
    tp, fp, fn = (w @ (pred * actual), w @ (pred * (1 - actual)), w @ ((1 - pred) * actual))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * tp / (2 * tp + fp + fn)


def _point(values: np.ndarray) -> float:
    """An F1 without a single positive prediction or item (0/0) counts as 0, as nothing was found."""
    return float(np.nan_to_num(values[0]))


def _scores(items: list[dict], judgements: list[dict], seed: int) -> dict:
    y = np.array([float(s["correct"]) for s in items])
    said = [j["verdict"] for j in judgements]
    hit = [v == ("right" if s["correct"] else "wrong") for s, v in zip(items, said, strict=True)]
    wrong_pred = np.array([float(v == "wrong") for v in said])
    right_pred = np.array([float(v == "right") for v in said])
    rows = [s["problem_id"] for s in items]
    n = len(items)

    def mean_f1(w=None):
        return (_f1(wrong_pred, 1 - y, w) + _f1(right_pred, y, w)) / 2

    located = [v == "wrong" and named_step(j["critique"]) == s["first_error_step"]
               for s, j, v in zip(items, judgements, said, strict=True) if not s["correct"]]
    none = sum(v is None for v in said)
    return {
        "rows": len(set(rows)), "items": n,
        "balanced_accuracy": float(balanced_accuracy(hit, y)),
        "balanced_accuracy_ci95": bootstrap(lambda w: balanced_accuracy(hit, y, w), n, clusters=rows, seed=seed),
        "f1_wrong": _point(_f1(wrong_pred, 1 - y)), "f1_right": _point(_f1(right_pred, y)),
        "f1_mean": _point(mean_f1()),
        "f1_wrong_ci95": bootstrap(lambda w: _f1(wrong_pred, 1 - y, w), n, clusters=rows, seed=seed),
        "f1_right_ci95": bootstrap(lambda w: _f1(right_pred, y, w), n, clusters=rows, seed=seed),
        "f1_mean_ci95": bootstrap(mean_f1, n, clusters=rows, seed=seed),
        "first_error_step_accuracy": sum(located) / len(located) if located else 0.0,
        "first_error_step_ci95": list(wilson_ci(sum(located), len(located))), "first_error_step_n": len(located),
        "no_verdict": none / n, "no_verdict_ci95": list(wilson_ci(none, n)),
    }


def prmbench_metrics(items: list[dict], judgements: list[dict], seed: int = 0) -> dict:
    """The scores over every item, and per `classification` (`by_classification`)."""
    groups = defaultdict(list)
    for s, j in zip(items, judgements, strict=True):
        groups[s["error_kind"]].append((s, j))
    by_kind = {k: _scores([s for s, _ in g], [j for _, j in g], seed) for k, g in sorted(groups.items())}
    return {**_scores(items, judgements, seed), "by_classification": by_kind}


def run_prmbench(critic: str | Path, out_dir: str | Path, cfg: CriticConfig | None = None, *, bench_dir=None,
                 vllm=None, overwrite: bool = False) -> dict:
    """`critiquelab eval-critic --benchmark prmbench`: rows checked first, then judged (resumable in
    `out_dir/judgements.jsonl`); per-item verdicts in `prmbench.jsonl`, scores in `critic.json`."""
    cfg = cfg or CriticConfig()
    items, data = load_prmbench(bench_dir, cfg.benchmark_limit)
    check_backend(critic, cfg, "critic")
    fingerprint = stable_hash({**judge_settings(critic, cfg)[0], "benchmark": "prmbench"})
    with output_dir(out_dir, "critic-eval", fingerprint=fingerprint, overwrite=overwrite) as (out, _):
        stats: dict = {}
        judgements = run_judge(critic, items, out / "judgements.jsonl", cfg, vllm=vllm, stats=stats)
        write_jsonl(out / "prmbench.jsonl", [
            {"id": s["id"], "problem_id": s["problem_id"], "classification": s["error_kind"], "correct": s["correct"],
             "first_error_step": s.get("first_error_step"), "verdict": j["verdict"],
             "named_step": named_step(j["critique"])} for s, j in zip(items, judgements, strict=True)])
        result = {"critic": str(critic), "benchmark": "prmbench",
                  "benchmark_dir": str((benchmarks_dir(bench_dir) / PRMBENCH).resolve()), "config": asdict(cfg),
                  "data": data, "prmbench": prmbench_metrics(items, judgements),
                  "metrics": critic_metrics(items, judgements),
                  "generation": fit_counts(stats)}
        write_json(out / "critic.json", result)
    return result


def summary_line(result: dict, out: str | Path) -> str:
    m = result["prmbench"]

    def pct(x):
        return f"{100 * x:.1f}%"

    def ci(c):
        return f"[{100 * c[0]:.1f}-{100 * c[1]:.1f}]"

    return (f"PRMBench ({m['rows']} rows, {m['items']} solutions): balanced accuracy {pct(m['balanced_accuracy'])} "
            f"{ci(m['balanced_accuracy_ci95'])}, F1 wrong/right/mean {pct(m['f1_wrong'])}/{pct(m['f1_right'])}/"
            f"{pct(m['f1_mean'])}, first wrong step {pct(m['first_error_step_accuracy'])} "
            f"{ci(m['first_error_step_ci95'])}, no verdict {pct(m['no_verdict'])}"
            f"{fit_note(result.get('generation', {}))}; details in {out}")
