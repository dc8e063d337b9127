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
from critiquelab.io import UserError, read_json, read_jsonl, write_jsonl
from critiquelab.llm import HFBackend, Sampling
from critiquelab.sources import load_problems
from critiquelab.world import check, noisy_solution

__all__ = ["IMPORT_PRESETS", "import_solutions", "read_import", "run_sample"]

_CARRY = ("start", "steps", "solution")


def _row(problem: dict, j: int, solution: str, source: str, extra: dict | None = None) -> dict:
    row = {"id": f"{problem['id']}-s{j}", "problem_id": problem["id"], "question": problem["question"],
           "answer": problem.get("answer"), "solution": solution, "source": source,
           "correct": grade(solution, problem["answer"]).correct if problem.get("answer") is not None else None}
    for k in _CARRY:
        if k in problem:
            row["reference_solution" if k == "solution" else k] = problem[k]
    if "steps" in problem:  # the world's exact label: where the first error is (None when right)
        row["first_error_step"] = check(problem, solution).error_step
    row.update(extra or {})
    return row


# Field layouts of public noisy-solution sets: ours -> theirs.
IMPORT_PRESETS = {
    "webinstruct": {"question": "question", "solution": "answer"},
    "metamathqa": {"question": "query", "solution": "response"},
    "numinamath": {"question": "problem", "solution": "solution"},
    "custom": {},
}


def _load_records(path: str, split: str) -> list[dict]:
    """JSONL / JSON list / parquet / a saved HF dataset dir / a hub dataset name."""
    p = Path(path)
    if p.suffix == ".jsonl":
        return read_jsonl(p)
    if p.suffix == ".json":
        rows = read_json(p)
        if not isinstance(rows, list):
            raise UserError(f"{p}: expected a JSON list of records")
        return rows
    import datasets

    if p.suffix == ".parquet":
        if not p.is_file():
            raise UserError(f"{p}: file not found")
        return datasets.Dataset.from_parquet(str(p)).to_list()
    if p.is_dir():
        ds = datasets.load_from_disk(str(p))
        return (ds[split] if isinstance(ds, datasets.DatasetDict) else ds).to_list()
    try:
        return datasets.load_dataset(path, split=split).to_list()
    except Exception as e:  # offline, unknown name, ...
        raise UserError(f"sample.import_path={path!r}: not a file and not loadable as an HF dataset ({e})") from None


def read_import(cfg: SampleConfig) -> list[tuple[dict, str]]:
    """(problem, solution) pairs of an imported file through the field mapping, checked, not graded."""
    if cfg.import_preset not in IMPORT_PRESETS:
        raise UserError(f"sample.import_preset={cfg.import_preset!r} (valid: {', '.join(IMPORT_PRESETS)})")
    if not cfg.import_path:
        raise UserError("sample.source=import needs sample.import_path")
    fields = {**IMPORT_PRESETS[cfg.import_preset], **cfg.import_fields}
    missing = [k for k in ("question", "solution") if k not in fields]
    if missing:
        raise UserError(f"sample.import_fields: map {', '.join(missing)} (e.g. sample.import_fields.question=problem)")
    pairs = []
    for i, r in enumerate(_load_records(cfg.import_path, cfg.import_split)[: cfg.n_problems]):
        where = f"{cfg.import_path}:{i + 1}"
        absent = [theirs for theirs in (fields["question"], fields["solution"]) if not r.get(theirs)]
        if absent:
            raise UserError(f"{where}: missing field(s) {', '.join(absent)}")
        pid = str(r[fields["id"]]) if "id" in fields and fields["id"] in r else f"import-{i}"
        problem = {"id": pid, "question": r[fields["question"]],
                   "answer": str(r[fields["answer"]]) if "answer" in fields and r.get(fields["answer"]) is not None
                   else None}
        pairs.append((problem, r[fields["solution"]]))
    return pairs


def import_solutions(cfg: SampleConfig) -> list[dict]:
    return [_row(problem, 0, solution, f"import:{cfg.import_path}") for problem, solution in read_import(cfg)]


def _generate(problems: list[dict], cfg: SampleConfig, model_dir, problems_path) -> list[dict]:
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
        raise UserError(f"sample.source={cfg.source!r}: use 'model', 'synthetic' or 'import'")
    return rows


def run_sample(problems_path: str | Path | None, out_path: str | Path, cfg: SampleConfig,
               model_dir: str | Path | None = None) -> dict:
    if cfg.source == "import":
        rows = problems = import_solutions(cfg)  # one imported solution per problem
    elif problems_path is None:
        raise UserError(f"sample.source={cfg.source}: needs --problems FILE")
    else:
        problems = load_problems(problems_path)[: cfg.n_problems]
        rows = _generate(problems, cfg, model_dir, problems_path)
    write_jsonl(out_path, rows)
    graded = [r["correct"] for r in rows if r["correct"] is not None]
    return {"solutions": len(rows), "problems": len(problems),
            "share_correct": sum(graded) / len(graded) if graded else None}
