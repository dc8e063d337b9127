"""Shared by the client checks; imported in every tool's venv, so standard library + transformers only.

The reference for every tool is the model's own chat template: for each row of the canonical
`dataset/<method>.jsonl` (TRL conversational prompt-completion), the expected token ids are
`apply_chat_template(prompt + completion)` and the prompt is `apply_chat_template(prompt,
add_generation_prompt=True)`, a prefix of it. A tool's tokenized example passes when its
input_ids are exactly one row's expected ids (so no stray default system prompt and the same
ChatML rendering) and its labels are -100 over the prompt tokens and equal to the input ids over
every completion token.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

IGNORE = -100


def parse_args() -> argparse.Namespace:
    """Every check's arguments: the critiquelab dataset dir, the tiny model, a scratch dir."""
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    return p.parse_args()


def read_rows(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _ids(tokenizer, messages: list[dict], generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class Expected:
    """input_ids tuple -> prompt length, for every row of the canonical JSONL."""

    def __init__(self, tokenizer, rows: list[dict]):
        self.tokenizer = tokenizer
        self.by_ids: dict[tuple[int, ...], int] = {}
        self.n_rows = len(rows)
        for r in rows:
            msgs = [{"role": m["role"], "content": m["content"]} for m in r["prompt"]]
            full = _ids(tokenizer, msgs + [{"role": m["role"], "content": m["content"]} for m in r["completion"]],
                        False)
            prompt = _ids(tokenizer, msgs, True)
            if full[:len(prompt)] != prompt:
                raise AssertionError("the chat template's prompt rendering is not a prefix of the full one")
            self.by_ids[tuple(full)] = len(prompt)

    def check(self, input_ids, labels) -> str | None:
        """None when the example is masked right; else a one-line reason."""
        input_ids = [int(x) for x in input_ids]
        labels = [int(x) for x in labels]
        n_prompt = self.by_ids.get(tuple(input_ids))
        if n_prompt is None:
            shown = self.tokenizer.decode(input_ids[:40])
            return f"input_ids match no row's chat-template rendering (stray or missing tokens?): {shown!r}..."
        if len(labels) != len(input_ids):
            return f"{len(labels)} labels for {len(input_ids)} input ids"
        if any(x != IGNORE for x in labels[:n_prompt]):
            return f"prompt not masked: {sum(x != IGNORE for x in labels[:n_prompt])} of {n_prompt} prompt labels trained"
        if labels[n_prompt:] != input_ids[n_prompt:]:
            return (f"completion masked: {sum(x == IGNORE for x in labels[n_prompt:])} of "
                    f"{len(labels) - n_prompt} completion labels are -100")
        return None

    def check_all(self, examples) -> dict:
        """examples: iterable of (input_ids, labels). Returns a summary dict (ok: bool)."""
        n = bad = 0
        first = None
        prompt_tokens = completion_tokens = 0
        seen = set()
        for input_ids, labels in examples:
            n += 1
            err = self.check(input_ids, labels)
            if err:
                bad += 1
                first = first or err
            else:
                k = self.by_ids[tuple(int(x) for x in input_ids)]
                prompt_tokens += k
                completion_tokens += len(input_ids) - k
                seen.add(tuple(int(x) for x in input_ids))
        ok = n > 0 and bad == 0 and len(seen) == len(self.by_ids)
        return {"ok": ok, "examples": n, "bad": bad, "rows": self.n_rows, "distinct_matched": len(seen),
                "masked_prompt_tokens": prompt_tokens, "trained_completion_tokens": completion_tokens,
                "first_error": first}


def losses_from_state(state_path: str | Path) -> list[float]:
    state = json.loads(Path(state_path).read_text())
    return [float(h["loss"]) for h in state.get("log_history", []) if "loss" in h]


def finite(losses: list[float]) -> bool:
    return bool(losses) and all(math.isfinite(x) for x in losses)


def emit(result: dict) -> None:
    """The one line the driver parses."""
    print("CHECK_RESULT " + json.dumps(result), flush=True)
