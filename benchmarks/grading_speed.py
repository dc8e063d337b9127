"""Grader throughput on a mix of real benchmark answers, one core (target: >= 500 answers/s), and
today's grader against the one before issue 34 (cf35938; target: within 10%).

The pairs: each of 1000 sampled references paired with itself written as a model would, and with
a wrong answer (another item's reference). Rounds alternate A B, B A, A B, ... (A: today's `grade`, B:
the grader at cf35938, loaded by benchmarks/_old_grader.py), after one untimed round of each
(imports, regexes and math-verify's own caches warmed alike); each pair of rounds gives a ratio
(today's answers/s over before's), written with its median, min and max. Plain math-verify
(`verify(parse(gold), parse(pred))`) is timed once beside them, as before (its strings seen before).

    nice -n 15 .venv/bin/python benchmarks/grading_speed.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _old_grader import BEFORE, old_modules  # noqa: E402
from math_verify import parse, verify  # noqa: E402

from critiquelab.grading import grade  # noqa: E402
from critiquelab.sources import BENCHMARKS, load_benchmark  # noqa: E402


def pairs(n: int = 1000) -> list[tuple[str, str]]:
    refs = [r["answer"] for name, b in BENCHMARKS.items() if b.answer_type == "math" for r in load_benchmark(name)
            if r["answer"]]
    rng = random.Random(0)
    out = []
    for ref in rng.sample(refs, n):
        out.append((f"So the answer is \\boxed{{{ref}}}.", ref))
        out.append((f"So the answer is \\boxed{{{rng.choice(refs)}}}.", ref))
    return out


def timed(fn, items) -> tuple[float, list[bool]]:
    t0 = time.perf_counter()
    got = [fn(resp, ref) for resp, ref in items]
    return time.perf_counter() - t0, got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds of each (A B A B ...)")
    ap.add_argument("--out", default="benchmarks/results/grading_speed.json")
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    items = pairs()
    old_grading, _ = old_modules()
    new = lambda resp, ref: grade(resp, ref).correct  # noqa: E731
    old = lambda resp, ref: old_grading.grade(resp, ref).correct  # noqa: E731
    timed(new, items)
    timed(old, items)
    per_s, ratios = {"ours": [], "before": []}, []
    for i in range(args.rounds):
        if i % 2 == 0:  # A B, then B A: neither grader always goes first
            t_new, ours = timed(new, items)
            t_old, before = timed(old, items)
        else:
            t_old, before = timed(old, items)
            t_new, ours = timed(new, items)
        per_s["ours"].append(len(items) / t_new)
        per_s["before"].append(len(items) / t_old)
        ratios.append(per_s["ours"][-1] / per_s["before"][-1])
    t_plain, plain = timed(lambda resp, ref: bool(verify(parse(ref), parse(resp))), items)
    result = {"pairs": len(items), "rounds": args.rounds, "order": f"A B, B A, A B, ... (A: ours, B: {BEFORE})",
              "ours_per_s": round(statistics.median(per_s["ours"])),
              "before_per_s": round(statistics.median(per_s["before"])),
              "ratio_median": round(statistics.median(ratios), 3), "ratio_min": round(min(ratios), 3),
              "ratio_max": round(max(ratios), 3),
              "math_verify_per_s": round(len(items) / t_plain),
              "speedup_over_math_verify": round(statistics.median(per_s["ours"]) * t_plain / len(items), 2),
              "agreement_with_math_verify": sum(a == b for a, b in zip(ours, plain, strict=True)) / len(items),
              "agreement_with_before": sum(a == b for a, b in zip(ours, before, strict=True)) / len(items),
              "ours_correct_share": sum(ours) / len(ours), "before_correct_share": sum(before) / len(before),
              "math_verify_correct_share": sum(plain) / len(plain),
              "note": "one core, timed under nice beside other work on a 2-core machine; ratios are side by side"}
    print(f"ours {result['ratio_median']}x the answers/s of {BEFORE} (median of {args.rounds}, "
          f"min {result['ratio_min']}, max {result['ratio_max']})")
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
