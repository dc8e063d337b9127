"""The pre-registered analysis of the confirmatory critique-style run (docs/preregistration-critique-style.md).

    .venv/bin/python docs/results/critique-style/analyze.py runs/style-confirm [--reference terse]

Reads the run directory of `critiquelab experiment --config recipes/critique-style-confirm.yaml` and
prints JSON with, per critique style (the experiment's model axis):

- H1: the CFT critic's balanced verdict accuracy on the held-out test solutions: the mean over seeds,
  with a 95% bootstrap CI that resamples problems (a problem's solutions together) and seeds, as the
  report's critics table does; `reaches_90` compares the point estimate with 0.90, `ci_above_90` its
  lower bound.
- H2: CFT minus the best SFT on the world's test split (the report's `cft_vs_best_sft`: the best SFT
  picked on validation, paired over test problems, mean over seeds per problem).
- H3: CFT(style) minus CFT(reference style) on test solving (paired over the same test problems) and
  on critic balanced accuracy (paired over the same judged solutions when both styles judged the
  same ones, as they do with injected solutions; otherwise each style's problems resampled on their own).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from critiquelab.io import read_jsonl
from critiquelab.results import _seed_mean, item_table, load_run, paired_comparison
from critiquelab.stats import REPS, balanced_accuracy, bootstrap

TARGET = 0.90


def critic_runs(run_dir: Path, cells: list[dict], style: str) -> tuple[dict, list[dict]]:
    """(solution id -> (correct, problem id), one {id: verdict right} per seed) of the style's CFT critic."""
    many = len({c.get("model") for c in cells}) > 1
    sols = run_dir / "critic" / (f"solutions-{style}.jsonl" if many else "solutions.jsonl")
    labels = {r["id"]: (r["correct"], r.get("problem_id", r["id"])) for r in read_jsonl(sols)
              if isinstance(r.get("correct"), bool)}
    runs = []
    for c in cells:
        f = run_dir / "critic" / c["name"] / "judgements.jsonl"
        if c["method"] == "cft" and c.get("model") == style and c.get("status", "ok") == "ok" and \
                (f.parent / "critic.json").is_file():
            runs.append({j["id"]: j.get("verdict") == ("right" if labels[j["id"]][0] else "wrong")
                         for j in read_jsonl(f) if j["id"] in labels})
    return labels, runs


def _arrays(labels: dict, runs: list[dict], ids: list) -> tuple[np.ndarray, np.ndarray, list]:
    return (np.array([[r[i] for i in ids] for r in runs], dtype=float),
            np.array([labels[i][0] for i in ids], dtype=float), [labels[i][1] for i in ids])


def h1(labels: dict, runs: list[dict]) -> dict:
    ids = sorted(set.intersection(*(set(r) for r in runs)), key=str)
    h, y, problems = _arrays(labels, runs, ids)
    ci = bootstrap(lambda w, p: _seed_mean(balanced_accuracy(h, y, w), p), len(ids), clusters=problems,
                   seeds=[len(runs)], reps=REPS)
    ba = float(np.mean(balanced_accuracy(h, y)))
    return {"balanced_accuracy": ba, "ci95": ci, "seeds": len(runs), "n": len(ids),
            "reaches_90": ba >= TARGET, "ci_above_90": ci[0] >= TARGET}


def h3_critic(a: tuple[dict, list[dict]], b: tuple[dict, list[dict]]) -> dict:
    (la, ra), (lb, rb) = a, b
    ids_a = set.intersection(*(set(r) for r in ra))
    ids_b = set.intersection(*(set(r) for r in rb))
    same = ids_a == ids_b and all(la[i] == lb[i] for i in ids_a)
    if same:  # the same judged solutions: paired, clustered by problem
        ids = sorted(ids_a, key=str)
        (ha, y, problems), (hb, _, _) = _arrays(la, ra, ids), _arrays(lb, rb, ids)
        ci = bootstrap(lambda w, pa, pb: _seed_mean(balanced_accuracy(ha, y, w), pa)
                       - _seed_mean(balanced_accuracy(hb, y, w), pb), len(ids), clusters=problems,
                       seeds=[len(ra), len(rb)], reps=REPS)
        delta = float(np.mean(balanced_accuracy(ha, y)) - np.mean(balanced_accuracy(hb, y)))
        return {"delta": delta, "ci95": ci, "paired": True, "n": len(ids)}
    # different solutions (each style's own samples): independent resamples of each side's problems
    sides = []
    for labels, runs, ids, seed in ((la, ra, ids_a, 0), (lb, rb, ids_b, 1)):
        ids = sorted(ids, key=str)
        h, y, problems = _arrays(labels, runs, ids)
        sides.append((float(np.mean(balanced_accuracy(h, y))), np.array(bootstrap(
            lambda w, p, h=h, y=y: _seed_mean(balanced_accuracy(h, y, w), p), len(ids), clusters=problems,
            seeds=[len(runs)], reps=REPS, seed=seed))))
    (ba_a, ci_a), (ba_b, ci_b) = sides
    half = float(np.hypot((ci_a[1] - ci_a[0]) / 2, (ci_b[1] - ci_b[0]) / 2))  # normal approximation
    return {"delta": ba_a - ba_b, "ci95": [ba_a - ba_b - half, ba_a - ba_b + half], "paired": False}


def h3_solving(items: dict, style: str, reference: str, bench: str) -> dict:
    def runs(model):
        return next(v for k, v in items.items() if k[0] == "cft" and k[1] == model and k[-1] == bench)
    ra, rb = runs(style), runs(reference)
    common = sorted(set.intersection(*(set(r) for r in ra + rb)), key=str)
    score = lambda rs, i: sum(r[i] for r in rs) / len(rs)  # noqa: E731
    return paired_comparison([score(ra, i) for i in common], [score(rb, i) for i in common])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--reference", default="terse", help="the style H3 compares with")
    p.add_argument("--benchmark", default="world", help="the solving benchmark of H2 and H3 (world: the test split)")
    a = p.parse_args()
    run = load_run(a.run_dir)
    styles = sorted({c["model"] for c in run.cells if c.get("model")}, key=lambda s: (s != a.reference, s))
    items = item_table(a.run_dir, run.cells)
    critics = {s: critic_runs(a.run_dir, run.cells, s) for s in styles}
    out = {"run": str(a.run_dir), "benchmark": a.benchmark, "reference": a.reference, "target": TARGET, "styles": {}}
    for s in styles:
        row = {"H1_critic": h1(*critics[s]) if critics[s][1] else None,
               "H2_cft_minus_best_sft": next(({k: v[k] for k in ("best_sft", "chosen_on", "delta", "ci95", "p_value",
                                                                  "n", "seeds")}
                                              for v in run.vs_best if v["model"] == s and v["benchmark"] == a.benchmark),
                                             None)}
        if s != a.reference:
            row["H3_cft_minus_cft_reference_solving"] = h3_solving(items, s, a.reference, a.benchmark)
            row["H3_cft_minus_cft_reference_critic"] = h3_critic(critics[s], critics[a.reference]) \
                if critics[s][1] and critics[a.reference][1] else None
        out["styles"][s] = row
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
