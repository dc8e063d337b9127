"""Where a greedy HF text and a greedy vLLM text of the same prompt first part, and how close the HF
model's logits were there (run by run.py in the vllm venv).

For each pair: the prompt rendered as critiquelab renders it, both texts tokenized, the first token where
they differ, and the HF model's (fp32) logits for the two candidate tokens after the common prefix. A gap
near 0 is a near-tie, which rounding differences between the two engines' kernels can flip.

    python greedy_diff.py MODEL_DIR PAIRS.json   # [{id, question, hf, vllm}] -> a line `DIFF_RESULT [...]`
"""

from __future__ import annotations

import json
import sys

import torch

from critiquelab.evaluate import conversation
from critiquelab.llm import load_causal_lm, load_tokenizer


def main(model_dir: str, pairs_path: str) -> None:
    tok = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir, dtype=torch.float32).eval()
    out = []
    for p in json.load(open(pairs_path)):
        prompt = tok.apply_chat_template(conversation(p["question"]), tokenize=False, add_generation_prompt=True)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        a = tok(p["hf"], add_special_tokens=False)["input_ids"]
        b = tok(p["vllm"], add_special_tokens=False)["input_ids"]
        i = next((j for j, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        with torch.inference_mode():
            logits = model(torch.tensor([ids + a[:i]])).logits[0, -1].float()
        top2 = torch.topk(logits, 2)
        row = {"id": p["id"], "position": i, "hf_tokens": len(a), "vllm_tokens": len(b),
               "hf_text_from_there": tok.decode(a[i:i + 8]), "vllm_text_from_there": tok.decode(b[i:i + 8]),
               "top2_gap": round(float(top2.values[0] - top2.values[1]), 6)}
        if i < len(a) and i < len(b):  # both went on, with different tokens: the HF logits of each
            row["logit_gap"] = round(float(logits[a[i]] - logits[b[i]]), 6)
        else:  # one text ended (EOS or a stop string) where the other went on
            eos = tok.eos_token_id
            nxt = a[i] if i < len(a) else b[i]
            row["logit_gap"] = round(abs(float(logits[eos] - logits[nxt])), 6) if eos is not None else None
            row["ended"] = "hf" if i >= len(a) else "vllm"
        out.append(row)
    print("DIFF_RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
