"""Training sets from problems, solutions and critiques, in TRL's conversational
prompt-completion format (`{"prompt": [messages], "completion": [messages]}`).

- `sft_reference`: question -> reference solution (one per problem)
- `sft_noisy`: question -> the noisy candidate solution
- `cft`: "critique this" + `Question:\\n{q}\\n\\nSolution:\\n{s}` -> the teacher's critique

Inputs: `solutions.jsonl` and the critique store `critique/critiques.jsonl` (latest ok record per item). Output: `dataset/<method>.jsonl` and
`dataset/manifest.json` with counts.

    critiquelab build --solutions runs/demo/solutions.jsonl --critiques runs/demo/critique/critiques.jsonl --out runs/demo/dataset
"""

from __future__ import annotations

from pathlib import Path

from critiquelab.config import BuildConfig
from critiquelab.critique import latest_ok
from critiquelab.io import UserError, read_jsonl, write_json, write_jsonl

__all__ = ["METHODS", "cft_prompt", "run_build"]

METHODS = ("sft_reference", "sft_noisy", "cft")


def cft_prompt(question: str, solution: str, instruction: str) -> str:
    return f"{instruction}\n\nQuestion:\n{question}\n\nSolution:\n{solution}"


def _sft(system: str, question: str, answer: str) -> dict:
    return {"prompt": [{"role": "system", "content": system}, {"role": "user", "content": question}],
            "completion": [{"role": "assistant", "content": answer}]}


def run_build(solutions_path: str | Path, critiques_path: str | Path, out_dir: str | Path,
              cfg: BuildConfig) -> dict:
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise UserError(f"build.methods: unknown {unknown} (valid: {', '.join(METHODS)})")
    solutions = read_jsonl(solutions_path)
    critiques = latest_ok(critiques_path)
    data: dict[str, list[dict]] = {m: [] for m in cfg.methods}
    seen_problems: set[str] = set()
    for s in solutions:
        if "sft_reference" in data and s["problem_id"] not in seen_problems and s.get("reference_solution"):
            seen_problems.add(s["problem_id"])
            data["sft_reference"].append(_sft(cfg.system_prompt, s["question"], s["reference_solution"]))
        if "sft_noisy" in data:
            data["sft_noisy"].append(_sft(cfg.system_prompt, s["question"], s["solution"]))
        if "cft" in data and s["id"] in critiques:
            data["cft"].append({
                "prompt": [{"role": "user", "content": cft_prompt(s["question"], s["solution"],
                                                                   cfg.critique_instruction)}],
                "completion": [{"role": "assistant", "content": critiques[s["id"]]["critique"]}]})
    out_dir = Path(out_dir)
    counts = {m: write_jsonl(out_dir / f"{m}.jsonl", rows) for m, rows in data.items()}
    for m, n in counts.items():
        if n == 0:
            raise UserError(f"build: the {m} set came out empty (check the solutions and critiques files)")
    write_json(out_dir / "manifest.json", {"stage": "build", "counts": counts,
                                           "inputs": [str(solutions_path), str(critiques_path)]})
    return counts
