"""Torch threads on a small CPU host: one intra-op thread vs torch's default, quiet and beside a busy process.

Each measurement is a fresh child process (`OMP_NUM_THREADS` set before torch loads) that trains the
demo's 0.85M model on random token batches (batch 8, 160 tokens; forward, backward, AdamW) for
`--steps` steps after 3 warm-up steps, and reports steps/s. Two conditions per round: quiet, and
beside one busy process (a pure-Python spin loop, as another job on the host would be). In each
condition the thread settings run back to back, the first alternating from round to round (1 then
default, default then 1, ...), so that the host's speed swings fall on both. Prints, per condition,
the median ratio (1 thread / default) with its min and max over rounds, and writes JSON.

    .venv/bin/python benchmarks/cpu_threads.py [--rounds 5] [--steps 40] [--out benchmarks/results/cpu_threads.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import sys, time, torch
from critiquelab.config import ModelConfig
from critiquelab.pretrain import build_model, build_tokenizer
steps = int(sys.argv[1])
tok = build_tokenizer(["Step 1: 3 + 4 = 7 The answer is 7. Conclusion: right"] * 50, 512)
model = build_model(ModelConfig(), tok, seed=0)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(0)
batch = torch.randint(0, len(tok), (8, 160), generator=g)
def step():
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
for _ in range(3):
    step()
t0 = time.perf_counter()
for _ in range(steps):
    step()
print(steps / (time.perf_counter() - t0), torch.get_num_threads())
"""


def measure(threads: int | None, steps: int) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps)], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), int(out[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--out", default="benchmarks/results/cpu_threads.json")
    a = p.parse_args()
    results: dict[str, list[dict]] = {"quiet": [], "beside_a_busy_process": []}
    for r in range(a.rounds):
        for condition in results:
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if condition != "quiet" else None
            try:
                order = [1, None] if r % 2 == 0 else [None, 1]
                got = {t: measure(t, a.steps) for t in order}
            finally:
                if busy:
                    busy.kill()
                    busy.wait()
            one, (default, n_default) = got[1][0], got[None]
            results[condition].append({"round": r, "first": "1 thread" if order[0] == 1 else "default",
                                       "steps_per_s_1_thread": round(one, 3),
                                       "steps_per_s_default": round(default, 3), "default_threads": n_default,
                                       "ratio_1_over_default": round(one / default, 3)})
            print(f"round {r} {condition}: 1 thread {one:.2f} steps/s, default ({n_default} threads) "
                  f"{default:.2f} steps/s, ratio {one / default:.2f}", flush=True)
    summary = {}
    for condition, rows in results.items():
        ratios = [x["ratio_1_over_default"] for x in rows]
        summary[condition] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        print(f"{condition}: 1 thread / default, median {summary[condition]['median']:.2f} "
              f"(min {summary[condition]['min']:.2f}, max {summary[condition]['max']:.2f}) over {len(rows)} rounds")
    from critiquelab.io import provenance

    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"benchmark": "cpu_threads", "cpu_count": os.cpu_count(), "steps": a.steps,
                                       "summary": summary, "rounds": results, "provenance": provenance()},
                                      indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
