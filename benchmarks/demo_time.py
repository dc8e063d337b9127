"""Fast demo from nothing: wall time, peak RSS and stage timings (target: <= 600 s, <= 4 GiB).

Runs `critiquelab demo --preset fast` in a child process with an empty model cache and a new
run directory, so the base model is pretrained too. Prints the stage timings and the ratios to
the targets, and writes JSON.

    .venv/bin/python benchmarks/demo_time.py [--out benchmarks/results/demo_time.json] [overrides...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from critiquelab.io import provenance

TARGET_S, TARGET_RSS_GIB = 600, 4.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/demo_time.json")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CRITIQUELAB_CACHE": str(Path(tmp) / "cache")}
        run_dir = Path(tmp) / "run"
        t0, load_before = time.time(), os.getloadavg()[0]
        subprocess.run([sys.executable, "-m", "critiquelab.cli", "demo", "--preset", "fast", "--out",
                        str(run_dir), *args.overrides], env=env, check=True)
        wall = time.time() - t0
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        report = json.loads((run_dir / "report.json").read_text())
    result = {"wall_s": round(wall, 1), "peak_rss_gib": round(peak_gib, 2),
              "wall_vs_target": round(wall / TARGET_S, 2), "rss_vs_target": round(peak_gib / TARGET_RSS_GIB, 2),
              "timings": report["timings"],
              "accuracy": {f"{r['method']}": [round(r["accuracy"], 3), [round(x, 3) for x in r["ci95"]]]
                           for r in report["runs"]},
              "cpu_count": os.cpu_count(), "overrides": args.overrides,
              # the host's 1-minute load average before and after: above cpu_count, other work shared the cores
              "load_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "provenance": provenance()}
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
