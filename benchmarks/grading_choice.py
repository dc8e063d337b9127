"""Choice-answer grading throughput against the math grader, on the same number of items, one core.

A: `grade_as("choice", ...)` on GPQA-Diamond items (4 permutations of each question), each
answered in the styles models use (a boxed letter, "The answer is (X)", a final standalone
option, an answer that is option text, several letters), half of them wrong.
B: `grade` (math: fast path, then math-verify) on as many math benchmark pairs, written as in
grading_speed.py (each reference boxed, and another item's reference boxed).
Rounds alternate A B A B ...; each pair of rounds gives a ratio (choice items/s over math
items/s), and the median with its min and max is printed and written to JSON.

    nice -n 15 .venv/bin/python benchmarks/grading_choice.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

from critiquelab.answers import grade_as
from critiquelab.grading import grade
from critiquelab.sources import BENCHMARKS, load_benchmark

STYLES = ["So the answer is \\boxed{{{x}}}.", "After comparing the options, the answer is ({x}).",
          "Options A and C are ruled out.\n\n**{x}**", "The final answer is: \\boxed{{\\text{{({x})}}}}",
          "I considered {x} first, but the answer is {y} or {x}."]


def choice_pairs(n: int, rng: random.Random) -> list[tuple[str, str, str]]:
    rows = load_benchmark("gpqa_diamond", choice_permutations=4)
    out = []
    for i in range(n):
        r = rows[i % len(rows)]
        other = rng.choice([x for x in r["letters"] if x != r["answer"]])
        given = r["answer"] if i % 2 == 0 else other
        out.append((rng.choice(STYLES).format(x=given, y=other), r["answer"], r["letters"]))
    return out


def math_pairs(n: int, rng: random.Random) -> list[tuple[str, str]]:
    refs = [r["answer"] for name, b in BENCHMARKS.items() if b.answer_type == "math"
            for r in load_benchmark(name) if r["answer"]]
    picked = rng.sample(refs, n // 2)
    return [(f"So the answer is \\boxed{{{ref if i % 2 == 0 else rng.choice(refs)}}}.", ref)
            for ref in picked for i in range(2)][:n]


def timed(fn) -> tuple[float, list[bool]]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of each (A B A B ...)")
    ap.add_argument("--out", default="benchmarks/results/grading_choice.json")
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    rng = random.Random(0)
    choice, maths = choice_pairs(args.n, rng), math_pairs(args.n, rng)
    grade_as("choice", "\\boxed{A}", "A")  # imports and regexes warmed before the clock
    grade("\\boxed{x^2}", "x^2")
    ratios, per_s = [], {"choice": [], "math": []}
    for _ in range(args.rounds):
        t_a, got_a = timed(lambda: [grade_as("choice", t, ref, letters).correct for t, ref, letters in choice])
        t_b, got_b = timed(lambda: [grade(t, ref).correct for t, ref in maths])
        per_s["choice"].append(len(choice) / t_a)
        per_s["math"].append(len(maths) / t_b)
        ratios.append(per_s["choice"][-1] / per_s["math"][-1])
    result = {"items": args.n, "rounds": args.rounds, "order": "A B A B (A: choice, B: math)",
              "choice_per_s_median": round(statistics.median(per_s["choice"])),
              "math_per_s_median": round(statistics.median(per_s["math"])),
              "ratio_median": round(statistics.median(ratios), 2), "ratio_min": round(min(ratios), 2),
              "ratio_max": round(max(ratios), 2), "choice_correct_share": sum(got_a) / len(got_a),
              "math_correct_share": sum(got_b) / len(got_b),
              "note": "one core, run under nice -n 15 beside another job on a 2-core machine"}
    print(f"choice grading {result['ratio_median']}x the math grader's items/s "
          f"(median of {args.rounds}, min {result['ratio_min']}, max {result['ratio_max']})")
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
