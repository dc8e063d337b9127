"""CPU kernels and reproducibility: which settings change a world pretraining's weights, and what the
portable settings (machine.PORTABLE: the same weights on any x86-64 CPU) cost in speed.

Part 1, weights: the same short pretraining of the demo's 0.85M base (the demo's world and settings,
`--tokens` tokens) in a fresh child process per setting, and the sha256 of its weights. Settings: native;
`ATEN_CPU_CAPABILITY=default` (torch's kernels for an older CPU); `MKL_CBWR=COMPATIBLE` (MKL's code path
for any CPU); the two together, under torch threads 2 and 1; the PORTABLE set (the two and
MKL_NUM_THREADS=1) under torch threads 1 and 2; native under 1 thread.

Part 2, speed: training steps (forward, backward, AdamW) and greedy generation of the demo's model
(batch 8 x 160) and of a SmolLM2-135M-shaped Llama (random weights, batch 4 x 128), native and portable
in fresh child processes, alternating which goes first from round to round. Prints the median ratio
portable / native with its min and max, and writes JSON.

    .venv/bin/python benchmarks/cpu_kernels.py [--rounds 3] [--tokens 60000] [--out benchmarks/results/cpu_kernels.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from critiquelab.io import provenance
from critiquelab.machine import KNOBS, PORTABLE

REPO = Path(__file__).resolve().parents[1]

PRETRAIN = r"""
import json, sys
from pathlib import Path
from critiquelab.config import RunConfig, load_config
from critiquelab.io import sha256_file
from critiquelab.pretrain import pretrain
from critiquelab.world import write_world
cfg = load_config(RunConfig, sys.argv[1], [f"pretrain.tokens={sys.argv[4]}"])
world, out = Path(sys.argv[2]), Path(sys.argv[3])
if not (world / "pretrain.jsonl").is_file():
    write_world(cfg.world, world)
pretrain(world, out, cfg.model, cfg.pretrain)
print(sha256_file(out / "model.safetensors"))
"""

SPEED = r"""
import sys, time, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
if sys.argv[1] == "demo":
    cfg, (B, T), n = LlamaConfig(vocab_size=512, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                                 num_key_value_heads=2, intermediate_size=384), (8, 160), 10
else:
    cfg, (B, T), n = LlamaConfig(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                                 num_key_value_heads=3, intermediate_size=1536, tie_word_embeddings=True), (4, 128), 2
model = LlamaForCausalLM(cfg)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
x = torch.randint(0, cfg.vocab_size, (B, T))
def step():
    model(input_ids=x, labels=x).loss.backward(); opt.step(); opt.zero_grad()
step()
t = time.perf_counter()
for _ in range(n):
    step()
train = n * B * T / (time.perf_counter() - t)
model.eval()
with torch.no_grad():
    p = torch.randint(0, cfg.vocab_size, (8, 32))
    model.generate(p, max_new_tokens=4, do_sample=False)
    t = time.perf_counter()
    model.generate(p, max_new_tokens=16, min_new_tokens=16, do_sample=False)
    gen = 8 * 16 / (time.perf_counter() - t)
print(train, gen)
"""


def child(code: str, args: list[str], env: dict) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in KNOBS}
    return subprocess.run([sys.executable, "-c", code, *args], env={**base, **env}, capture_output=True, text=True,
                          check=True).stdout.split()


def weights(tokens: int) -> dict:
    settings = {
        "native": {}, "native, 1 thread": {"OMP_NUM_THREADS": "1"},
        "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
        "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
        "both": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"},
        "both, 1 thread": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1"},
        "portable": dict(PORTABLE), "portable, 1 thread": {**PORTABLE, "OMP_NUM_THREADS": "1"},
        "portable, 2 threads": {**PORTABLE, "OMP_NUM_THREADS": "2"},
    }
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, env) in enumerate(settings.items()):
            args = [str(REPO / "recipes/demo-fast.yaml"), str(Path(tmp) / "world"), str(Path(tmp) / f"base{i}"), str(tokens)]
            sha = child(PRETRAIN, args, env)[-1]
            out[name] = {"env": env, "sha256": sha}
            print(f"{name:32s} {sha[:16]}", flush=True)
    return out


def speed(rounds: int) -> dict:
    out = {}
    for model in ("demo", "smollm2-shaped"):
        rows = []
        for r in range(rounds):
            order = ["native", "portable"] if r % 2 == 0 else ["portable", "native"]
            got = {s: [float(v) for v in child(SPEED, [model], {} if s == "native" else dict(PORTABLE))] for s in order}
            rows.append({"round": r, "first": order[0], "native": got["native"], "portable": got["portable"]})
            print(f"{model} round {r}: native train {got['native'][0]:.0f} tok/s gen {got['native'][1]:.1f} tok/s; "
                  f"portable train {got['portable'][0]:.0f} gen {got['portable'][1]:.1f}", flush=True)
        summary = {}
        for i, what in enumerate(("train_tokens_per_s", "generate_tokens_per_s")):
            ratios = [row["portable"][i] / row["native"][i] for row in rows]
            summary[what] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
            print(f"{model} {what} portable / native: median {summary[what]['median']:.2f} "
                  f"(min {min(ratios):.2f}, max {max(ratios):.2f}) over {rounds} rounds", flush=True)
        out[model] = {"rounds": rows, "ratio_portable_over_native": summary}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tokens", type=int, default=60000)
    p.add_argument("--out", default="benchmarks/results/cpu_kernels.json")
    a = p.parse_args()
    load = os.getloadavg()[0]
    result = {"provenance": provenance(), "portable": PORTABLE, "load_before": load,
              "weights": weights(a.tokens), "speed": speed(a.rounds), "load_after": os.getloadavg()[0]}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
