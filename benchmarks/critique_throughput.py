"""Critique throughput against a local endpoint of known latency (target: >= 0.8 * C / L per s).

Side by side, same endpoint (a proxy on 127.0.0.1 that answers after L seconds, optionally
failing a share of requests with 500/429/cut connections):
- critiquelab's async teacher with concurrency C,
- a sequential loop (one request at a time, the openai sync client),
- a 20-process pool of sync clients, like the official CFT script.
Then a run with 10% injected failures, counting lost items.

    .venv/bin/python benchmarks/critique_throughput.py [--latency 0.25] [--concurrency 64] [--items 640]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers import FaultProxy  # noqa: E402

from critiquelab.config import CritiqueConfig  # noqa: E402
from critiquelab.critique import latest_ok, load_prompt, render, run_critique  # noqa: E402
from critiquelab.io import Incomplete, read_jsonl, write_jsonl  # noqa: E402


def _serve(plan_seed, latency, port_q):
    """The endpoint runs in its own process, so it does not share a GIL with the client measured."""
    rng = random.Random(plan_seed)
    plan = (lambda i: rng.choice(["500", "429", "cut"]) if rng.random() < 0.10 else None) if plan_seed is not None \
        else (lambda i: None)
    with FaultProxy(None, plan=plan, latency_s=latency) as proxy:
        port_q.put(proxy.url)
        while True:
            time.sleep(3600)


class Endpoint:
    def __init__(self, latency: float, faults_seed: int | None = None):
        import multiprocessing as mp

        q = mp.Queue()
        self.proc = mp.Process(target=_serve, args=(faults_seed, latency, q), daemon=True)
        self.proc.start()
        self.url = q.get(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.join()


def _sync_one(args):
    url, messages = args
    import openai

    client = openai.OpenAI(base_url=url, api_key="local", max_retries=5)
    return client.chat.completions.create(model="m", messages=messages, max_tokens=64).choices[0].message.content


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.25)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--items", type=int, default=640)
    ap.add_argument("--out", default="benchmarks/results/critique_throughput.json")
    args = ap.parse_args()
    L, C = args.latency, args.concurrency
    rows = [{"id": f"q{i}", "question": f"What is {i} + {i}?", "solution": f"{i} + {i} = {2 * i + (i % 2)}"}
            for i in range(args.items)]
    prompt = load_prompt("critique_paper")
    result = {"latency_s": L, "concurrency": C, "items": len(rows), "target_per_s": round(0.8 * C / L, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        sols = Path(tmp) / "solutions.jsonl"
        write_jsonl(sols, rows)
        with Endpoint(L) as proxy:
            cfg = CritiqueConfig(teacher="openai", base_url=proxy.url + "/v1", model="m", concurrency=C,
                                 max_tokens=64)
            t0 = time.perf_counter()
            s = run_critique(sols, Path(tmp) / "ours", cfg)
            result["ours_per_s"] = round(s["ok"] / (time.perf_counter() - t0), 1)

            n_seq = max(8, int(4 / L))
            t0 = time.perf_counter()
            for r in rows[:n_seq]:
                _sync_one((proxy.url + "/v1", render(prompt, r)))
            result["sequential_per_s"] = round(n_seq / (time.perf_counter() - t0), 1)

            t0 = time.perf_counter()
            with Pool(20) as pool:
                done = pool.map(_sync_one, [(proxy.url + "/v1", render(prompt, r)) for r in rows])
            result["pool20_per_s"] = round(len(done) / (time.perf_counter() - t0), 1)

        with Endpoint(L, faults_seed=0) as proxy:
            cfg = CritiqueConfig(teacher="openai", base_url=proxy.url + "/v1", model="m", concurrency=C,
                                 max_tokens=64)
            t0 = time.perf_counter()
            try:
                s = run_critique(sols, Path(tmp) / "faulty", cfg)
            except Incomplete as e:  # items that failed every attempt: counted below
                s = e.summary
            result["with_10pct_faults_per_s"] = round(s["ok"] / (time.perf_counter() - t0), 1)
            result["attempts_total"] = sum(r.get("attempts", 1) for r in
                                           read_jsonl(Path(tmp) / "faulty" / "critiques.jsonl"))
            ok = latest_ok(Path(tmp) / "faulty" / "critiques.jsonl")
            result["lost_with_faults"] = len(rows) - len(ok)
            result["failed_records_with_faults"] = s["failed"]
    result["ours_vs_target"] = round(result["ours_per_s"] / result["target_per_s"], 2)
    result["ours_vs_sequential"] = round(result["ours_per_s"] / result["sequential_per_s"], 1)
    result["ours_vs_pool20"] = round(result["ours_per_s"] / result["pool20_per_s"], 1)
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
