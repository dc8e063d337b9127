"""The grader against hand labels: agreement on tests/data/grading_labelled.jsonl, per kind.

Each row is a real-looking model response with a hand label (right / wrong / no_answer, read by
a person: scripts/grading_set.py). A grader agrees with a row when it grades the response
correct exactly when the label is `right`. Side by side:
- ours: `answers.grade_as` (math: `grading.grade` with the question, default fallback);
- math-verify: plain `math_verify.verify(parse("$" + reference + "$"), parse(response))`;
- before: the grader at cf35938 (before issue 34), for the record.
The fallback is measured on the real outputs (PRMBench's solutions and SmolLM2-135M's answers,
not the hand-written rows): how often each `eval.answer_fallback` mode decides (an answer read
without a final-answer marker), and how often its grade then agrees with the label; the grader at
cf35938 beside them (its last-number fallback, on the math rows).

    .venv/bin/python benchmarks/grading_agreement.py   # writes benchmarks/results/grading_agreement.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _old_grader import BEFORE, old_modules  # noqa: E402
from math_verify import parse, verify  # noqa: E402

from critiquelab.answers import grade_as  # noqa: E402
from critiquelab.grading import FALLBACK, FALLBACKS  # noqa: E402
from critiquelab.sources import LETTERS  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "grading_labelled.jsonl"
REAL = ("prmbench", "smollm2")


def ours(row: dict, fallback: str = FALLBACK):
    return grade_as(row["answer_type"], row["response"], row["reference"], row.get("letters") or LETTERS,
                    options=row.get("options"), question=row["question"], fallback=fallback)


def before(row: dict) -> bool:
    _, old_answers = old_modules()
    return old_answers.grade_as(row["answer_type"], row["response"], row["reference"],
                                row.get("letters") or LETTERS).correct


def plain_math_verify(row: dict) -> bool:
    try:
        return bool(verify(parse(f"${row['reference']}$"), parse(row["response"])))
    except Exception:  # math-verify's own errors: not verified
        return False


def agreement(rows: list[dict], correct: list[bool]) -> float:
    return sum(c == (r["label"] == "right") for r, c in zip(rows, correct, strict=True)) / len(rows) if rows else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default="benchmarks/results/grading_agreement.json")
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8")]
    got = {"ours": [ours(r).correct for r in rows], "math_verify": [plain_math_verify(r) for r in rows],
           f"before_{BEFORE}": [before(r) for r in rows]}
    kinds = defaultdict(list)
    for i, r in enumerate(rows):
        kinds[r["kind"]].append(i)
        kinds[f"source:{r['source']}"].append(i)
    kinds["all"] = list(range(len(rows)))
    table = {}
    for kind, idx in kinds.items():
        sub = [rows[i] for i in idx]
        table[kind] = {"n": len(idx), **{name: round(agreement(sub, [c[i] for i in idx]), 4) for name, c in got.items()}}
    real = [r for r in rows if r["source"] in REAL]
    fallback = {}
    for mode in FALLBACKS:
        grades = [ours(r, mode) for r in real]
        decided = [(r, g) for r, g in zip(real, grades, strict=True) if g.fallback]
        fallback[mode] = {"real_rows": len(real), "decided": len(decided),
                          "decided_agree": sum(g.correct == (r["label"] == "right") for r, g in decided),
                          "decided_false_right": sum(g.correct and r["label"] != "right" for r, g in decided),
                          "decided_false_wrong": sum(not g.correct and r["label"] == "right" for r, g in decided),
                          "agreement_all_real": round(agreement(real, [g.correct for g in grades]), 4)}
    old_grading, _ = old_modules()
    old = [(r, old_grading.grade(r["response"], r["reference"])) for r in real if r["answer_type"] == "math"]
    decided = [(r, g) for r, g in old if g.fallback]
    fallback[f"before_{BEFORE}"] = {"real_rows": len(old), "decided": len(decided),
                                    "decided_agree": sum(g.correct == (r["label"] == "right") for r, g in decided),
                                    "decided_false_right": sum(g.correct and r["label"] != "right" for r, g in decided),
                                    "decided_false_wrong": sum(not g.correct and r["label"] == "right" for r, g in decided),
                                    "agreement_all_real": round(agreement([r for r, _ in old], [g.correct for _, g in old]),
                                                                4)}
    result = {"rows": len(rows), "labels": {k: sum(r["label"] == k for r in rows) for k in ("right", "wrong", "no_answer")},
              "agreement": table, "fallback_on_real_outputs": fallback, "default_fallback": FALLBACK,
              "disagreements_ours": [{"id": r["id"], "kind": r["kind"], "label": r["label"],
                                      "extracted": ours(r).extracted, "reference": r["reference"]}
                                     for r, c in zip(rows, got["ours"], strict=True) if c != (r["label"] == "right")]}
    width = max(len(k) for k in table)
    print(f"{'kind':{width}s}    n   ours  math-verify  before")
    for kind, t in sorted(table.items(), key=lambda kv: (kv[0].startswith("source:") or kv[0] == "all", kv[0])):
        print(f"{kind:{width}s} {t['n']:4d} {100 * t['ours']:6.1f} {100 * t['math_verify']:12.1f} "
              f"{100 * t[f'before_{BEFORE}']:7.1f}")
    for mode, f in fallback.items():
        print(f"fallback={mode}: decides on {f['decided']} of {f['real_rows']} real outputs, agrees on "
              f"{f['decided_agree']} ({f['decided_false_right']} false right); all real rows {100 * f['agreement_all_real']:.1f}%")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
