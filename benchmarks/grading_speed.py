"""Grader throughput on a mix of real benchmark answers, one core (target: >= 500 answers/s).

Side by side: critiquelab's `grade` (fast exact/numeric path, then math-verify) against plain
math-verify (`verify(parse(gold), parse(pred))`) on the same pairs: each reference paired with
itself written as a model would, and with a wrong answer (another item's reference).

    .venv/bin/python benchmarks/grading_speed.py
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from math_verify import parse, verify

from critiquelab.grading import grade
from critiquelab.sources import BENCHMARKS, load_benchmark


def main() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    refs = [r["answer"] for name in BENCHMARKS for r in load_benchmark(name) if r["answer"]]
    rng = random.Random(0)
    pairs = []
    for ref in rng.sample(refs, 1000):
        pairs.append((f"So the answer is \\boxed{{{ref}}}.", ref))
        pairs.append((f"So the answer is \\boxed{{{rng.choice(refs)}}}.", ref))
    t0 = time.perf_counter()
    ours = [grade(resp, ref).correct for resp, ref in pairs]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = [bool(verify(parse(ref), parse(resp))) for resp, ref in pairs]
    t_plain = time.perf_counter() - t0
    result = {"pairs": len(pairs), "ours_per_s": round(len(pairs) / t_ours), "math_verify_per_s":
              round(len(pairs) / t_plain), "speedup": round(t_plain / t_ours, 2),
              "agreement": sum(a == b for a, b in zip(ours, plain, strict=True)) / len(pairs),
              "ours_correct_share": sum(ours) / len(ours), "math_verify_correct_share": sum(plain) / len(plain)}
    print(json.dumps(result, indent=2))
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/grading_speed.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
