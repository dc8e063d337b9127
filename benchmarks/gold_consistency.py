"""Gold self-consistency of the grader on every benchmark (target: 100%).

For each item: the reference graded against itself, as a model would write it
(`The answer is \\boxed{ref}`), and through math-verify alone (no fast path) as a check of the
symbolic path, also after the rewrites `_for_math_verify` makes (`math_verify_prepared`); for
MATH-500 and Minerva also the gold *solution text* graded against the reference. Lists every
miss and writes JSON.

    .venv/bin/python benchmarks/gold_consistency.py [--benchmarks-dir DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from critiquelab.grading import _for_math_verify, _math_verify, grade
from critiquelab.sources import BENCHMARKS, load_benchmark


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--benchmarks-dir")
    ap.add_argument("--out", default="benchmarks/results/gold_consistency.json")
    args = ap.parse_args()
    out = {}
    for name in BENCHMARKS:
        rows = load_benchmark(name, bench_dir=args.benchmarks_dir)
        with_ref = [r for r in rows if r["answer"] is not None]
        self_miss = [r["id"] for r in with_ref if not grade(f"The answer is \\boxed{{{r['answer']}}}.", r["answer"]).correct]
        mv = [_math_verify(r["answer"], r["answer"]) for r in with_ref]
        mv_miss = [r["id"] for r, ok in zip(with_ref, mv, strict=True) if not ok]
        # the rewrites math-verify gets since issue 34 (explicit factors, E_k / I_k, one \pm) keep gold equal to itself
        prep_miss = [r["id"] for r in with_ref if not _math_verify(*_for_math_verify(r["answer"], r["answer"]))]
        entry = {"n": len(rows), "unparseable_reference": len(rows) - len(with_ref),
                 "self": 1 - len(self_miss) / len(with_ref), "self_misses": self_miss,
                 "math_verify_only": 1 - len(mv_miss) / len(with_ref), "math_verify_only_misses": len(mv_miss),
                 "math_verify_prepared": 1 - len(prep_miss) / len(with_ref), "math_verify_prepared_misses": prep_miss}
        if name in ("math-500", "minerva_math"):
            sol_miss = [(r["id"], r["answer"], grade(r["solution"], r["answer"]).extracted) for r in with_ref
                        if not grade(r["solution"], r["answer"]).correct]
            entry["solution"] = 1 - len(sol_miss) / len(with_ref)
            entry["solution_misses"] = sol_miss
        out[name] = entry
        print(f"{name:14s} n={entry['n']:5d} self={100 * entry['self']:.1f}% "
              f"math-verify-only={100 * entry['math_verify_only']:.1f}% "
              f"prepared={100 * entry['math_verify_prepared']:.1f}% "
              + (f"solution={100 * entry['solution']:.1f}%" if "solution" in entry else ""))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
