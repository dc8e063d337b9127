"""HF batched generation vs batch size 1 on the tiny model: problems/s and identical outputs
(target: >= 5x). Both runs in one process, same prompts, greedy.

    .venv/bin/python benchmarks/generation_batching.py --model runs/demo/... --world runs/demo/world
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from critiquelab.evaluate import conversation
from critiquelab.io import read_jsonl
from critiquelab.llm import HFBackend, Sampling


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--world", required=True)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default="benchmarks/results/generation_batching.json")
    args = ap.parse_args()
    convs = [conversation(p["question"]) for p in read_jsonl(Path(args.world) / "test.jsonl")[: args.n]]
    sampling = Sampling(max_new_tokens=100)
    timings, outputs = {}, {}
    for bs in (1, args.batch_size):
        backend = HFBackend(args.model, batch_size=bs)
        backend.generate(convs[:4], sampling)  # warm-up
        t0 = time.perf_counter()
        outputs[bs] = backend.generate(convs, sampling)
        timings[bs] = time.perf_counter() - t0
    result = {"problems": len(convs), "batch_size": args.batch_size,
              "problems_per_s_batch1": round(len(convs) / timings[1], 1),
              "problems_per_s_batched": round(len(convs) / timings[args.batch_size], 1),
              "speedup": round(timings[1] / timings[args.batch_size], 2),
              "identical_outputs": sum(a == b for a, b in zip(outputs[1], outputs[args.batch_size], strict=True))}
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
