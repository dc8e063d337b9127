"""Judge throughput vs plain generation on the same HF backend, prompts and lengths (target >= 0.8).

`run_judge` adds prompt building, verdict parsing and the resumable JSONL store on top of
`backend.generate`; both runs use one loaded backend, greedy, the same max_new_tokens.

    .venv/bin/python benchmarks/judge_throughput.py --critic runs/demo/models/cft-s0 --solutions runs/demo/critic/solutions.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from critiquelab.build import cft_prompt
from critiquelab.config import CriticConfig
from critiquelab.critic import run_judge
from critiquelab.io import read_jsonl
from critiquelab.llm import HFBackend, Sampling


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--critic", required=True)
    ap.add_argument("--solutions", required=True)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--out", default="benchmarks/results/judge_throughput.json")
    args = ap.parse_args()
    sols = read_jsonl(args.solutions)[: args.n]
    backend = HFBackend(args.critic, batch_size=64)
    sampling = Sampling(max_new_tokens=200, stop=["[END]"])
    cfg = CriticConfig(max_new_tokens=200, batch_size=64)
    convs = [[{"role": "user", "content": cft_prompt(s["question"], s["solution"], cfg.instruction)}] for s in sols]
    backend.generate(convs[:8], sampling)  # warm-up
    t0 = time.perf_counter()
    plain = backend.generate(convs, sampling)
    t_plain = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        judged = run_judge(args.critic, sols, Path(tmp) / "j.jsonl", cfg, backend=backend)
        t_judge = time.perf_counter() - t0
    result = {"solutions": len(sols), "plain_per_s": round(len(sols) / t_plain, 1),
              "judge_per_s": round(len(sols) / t_judge, 1), "ratio": round(t_plain / t_judge, 3),
              "same_texts": sum(a == j["critique"] for a, j in zip(plain, judged, strict=True))}
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
