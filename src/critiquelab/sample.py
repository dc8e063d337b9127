"""Noisy candidate solutions: sampled from a model, or made by the world's error injector.

Input: problems JSONL (`id`, `question`, optional `answer`; world problems also carry `start`
and `steps`). Output: `solutions.jsonl`, one row per solution: `id`, `problem_id`, `question`,
`answer`, `solution`, `source`, `correct` (graded against the reference when there is one), and
the world fields copied through so later stages need no join.

    critiquelab sample --problems runs/w/train.jsonl --model runs/base --out runs/demo/solutions.jsonl
"""

from __future__ import annotations

import random
from pathlib import Path

from critiquelab.config import SampleConfig
from critiquelab.evaluate import conversation
from critiquelab.grading import grade
from critiquelab.io import UserError, write_jsonl
from critiquelab.llm import HFBackend, Sampling
from critiquelab.sources import load_problems
from critiquelab.world import noisy_solution

__all__ = ["run_sample"]

_CARRY = ("start", "steps", "solution")


def _row(problem: dict, j: int, solution: str, source: str, extra: dict | None = None) -> dict:
    row = {"id": f"{problem['id']}-s{j}", "problem_id": problem["id"], "question": problem["question"],
           "answer": problem.get("answer"), "solution": solution, "source": source,
           "correct": grade(solution, problem["answer"]).correct if problem.get("answer") is not None else None}
    for k in _CARRY:
        if k in problem:
            row["reference_solution" if k == "solution" else k] = problem[k]
    row.update(extra or {})
    return row


def run_sample(problems_path: str | Path, out_path: str | Path, cfg: SampleConfig,
               model_dir: str | Path | None = None) -> dict:
    problems = load_problems(problems_path)[: cfg.n_problems]
    rows: list[dict] = []
    if cfg.source == "synthetic":
        rng = random.Random(cfg.seed)
        for p in problems:
            if "steps" not in p:
                raise UserError(f"{problems_path}: source=synthetic needs world problems (with 'steps')")
            for j in range(cfg.n_per_problem):
                if rng.random() < cfg.error_rate:
                    text, info = noisy_solution(p, rng)
                    rows.append(_row(p, j, text, "synthetic", {"injected": info}))
                else:
                    rows.append(_row(p, j, p["solution"], "synthetic", {"injected": None}))
    elif cfg.source == "model":
        if model_dir is None:
            raise UserError("sample: source=model needs --model DIR")
        backend = HFBackend(model_dir, batch_size=cfg.batch_size)
        sampling = Sampling(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                            top_p=cfg.top_p, seed=cfg.seed)
        convs = [conversation(p["question"]) for p in problems for _ in range(cfg.n_per_problem)]
        from rich.progress import Progress

        with Progress() as progress:
            task = progress.add_task("sample", total=len(convs))
            texts = backend.generate(convs, sampling, on_batch=lambda n: progress.advance(task, n))
        it = iter(texts)
        for p in problems:
            for j in range(cfg.n_per_problem):
                rows.append(_row(p, j, next(it), f"model:{model_dir}"))
    else:
        raise UserError(f"sample.source={cfg.source!r}: use 'model' or 'synthetic'")
    write_jsonl(out_path, rows)
    graded = [r["correct"] for r in rows if r["correct"] is not None]
    return {"solutions": len(rows), "problems": len(problems),
            "share_correct": sum(graded) / len(graded) if graded else None}
