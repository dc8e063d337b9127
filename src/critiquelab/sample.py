"""Noisy candidate solutions: sampled from a model, or made by the world's error injector.

Input: problems JSONL (`id`, `question`, optional `answer`; world problems also carry `start`
and `steps`). Output: `solutions.jsonl`, one row per solution: `id`, `problem_id`, `question`,
`answer`, `solution`, `source`, `correct` (graded against the reference when there is one),
`key` (what the row was made from: problem, sample index and sampler settings), and the world
fields copied through so later stages need no join.

Resumable: rows are appended chunk by chunk to `<out>.partial` (an append-only store, through
`generate_resumable`, so `sample.data_parallel` processes can share the work); a rerun after an
interruption generates only the missing ones, and the finished file is written at once in problem
order. A finished `<out>` made with the same settings is kept as it is; one made with other settings
is replaced only with `overwrite`.

    critiquelab sample --problems runs/w/train.jsonl --model runs/base --out runs/demo/solutions.jsonl
"""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path

from critiquelab.config import SampleConfig
from critiquelab.evaluate import conversation, make_backend
from critiquelab.grading import grade
from critiquelab.io import (
    Store,
    UserError,
    check_output_file,
    check_rows,
    read_json,
    read_jsonl,
    stable_hash,
    write_jsonl,
)
from critiquelab.llm import Sampling, check_model, check_parallel, fit_counts, fit_note, generate_resumable
from critiquelab.logs import progress_bar
from critiquelab.sources import load_problems
from critiquelab.world import check, noisy_solution

__all__ = ["IMPORT_PRESETS", "SEED_TARGETS", "import_solutions", "rank_seeds", "read_import", "run_sample", "run_seeds",
           "seeds_summary_line", "summary_line"]

_CARRY = ("start", "steps", "solution")


def _row(problem: dict, j: int, solution: str, source: str, extra: dict | None = None, gen: str | None = None) -> dict:
    row = {"id": f"{problem['id']}-{gen}-s{j}" if gen else f"{problem['id']}-s{j}", "problem_id": problem["id"],
           **({"generator": gen} if gen else {}), "question": problem["question"],
           "answer": problem.get("answer"), "solution": solution, "source": source,
           "correct": grade(solution, problem["answer"], problem.get("question")).correct if problem.get("answer") is not None else None}
    for k in _CARRY:
        if k in problem:
            row["reference_solution" if k == "solution" else k] = problem[k]
    if "steps" in problem:  # the world's exact labels: where the first error is and its kind (None when right)
        res = check(problem, solution)
        row["first_error_step"], row["error_kind"] = res.error_step, res.error_kind
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
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise UserError(f"{p}: expected a JSON list of records (objects)")
        return rows
    import datasets

    if p.suffix == ".parquet":
        if not p.is_file():
            raise UserError(f"{p}: file not found")
        try:
            return datasets.Dataset.from_parquet(str(p)).to_list()
        except Exception as e:  # not parquet, truncated, ...
            raise UserError(f"{p}: cannot read as parquet ({type(e).__name__})") from None
    try:
        if p.is_dir():
            ds = datasets.load_from_disk(str(p))
            return (ds[split] if isinstance(ds, datasets.DatasetDict) else ds).to_list()
        return datasets.load_dataset(path, split=split).to_list()
    except Exception as e:  # offline, unknown name, unknown split, not a saved dataset, ...
        raise UserError(f"sample.import_path={path!r}: not a file and not loadable as an HF dataset "
                        f"({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None


def read_import(cfg: SampleConfig) -> list[tuple[dict, str]]:
    """(problem, solution) pairs of an imported file through the field mapping, checked, not graded."""
    if not cfg.import_path:
        raise UserError("sample.source=import needs sample.import_path")
    fields = {**IMPORT_PRESETS[cfg.import_preset], **cfg.import_fields}
    missing = [k for k in ("question", "solution") if k not in fields]
    if missing:
        raise UserError(f"sample.import_fields: map {', '.join(missing)} (e.g. sample.import_fields.question=problem)")
    records = _load_records(cfg.import_path, cfg.import_split)[: cfg.n_problems]
    if not records:
        raise UserError(f"{cfg.import_path}: no records to import (it is empty)")
    types = {"question": str, "solution": str, "answer": (str, int, float), "id": (str, int)}
    check_rows(records, cfg.import_path, {fields[k]: types[k] for k in ("question", "solution")},
               optional={fields[k]: types[k] for k in ("answer", "id") if k in fields},
               unique=fields.get("id"), fix="map your columns with sample.import_fields.<ours>=<theirs>")
    pairs = []
    for i, r in enumerate(records):
        pid = str(r[fields["id"]]) if "id" in fields and fields["id"] in r else f"import-{i}"
        problem = {"id": pid, "question": r[fields["question"]],
                   "answer": str(r[fields["answer"]]) if "answer" in fields and r.get(fields["answer"]) is not None
                   else None}
        pairs.append((problem, r[fields["solution"]]))
    return pairs


def import_solutions(cfg: SampleConfig) -> list[dict]:
    return [_row(problem, 0, solution, f"import:{cfg.import_path}") for problem, solution in read_import(cfg)]


def _plan(problems: list[dict], cfg: SampleConfig, model: str | None,
          gen: str | None = None) -> list[tuple[str, dict, int]]:
    """(key, problem, sample index) of every solution to make; the key hashes what it is made from."""
    settings = {"source": cfg.source, "model": model, "seed": cfg.seed, **({"generator": gen} if gen else {}), **(
        {"error_rate": cfg.error_rate} if cfg.source == "synthetic" else
        {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens}),
        **({"backend": cfg.backend} if cfg.backend != "hf" else {})}  # (hf keys are older than the field)
    return [(stable_hash({"settings": settings, "problem": p["id"], "question": p["question"],
                         "answer": p.get("answer"), "j": j}, 16), p, j)
            for p in problems for j in range(cfg.n_per_problem)]


def _synthetic(plan, cfg: SampleConfig, write, gen: str | None = None) -> None:
    for key, p, j in plan:
        rng = random.Random(stable_hash({"seed": cfg.seed, "id": p["id"], "j": j, **({"gen": gen} if gen else {})}))
        if rng.random() < cfg.error_rate:
            text, info = noisy_solution(p, rng)
            write(key, _row(p, j, text, "synthetic", {"injected": info}, gen))
        else:
            write(key, _row(p, j, p["solution"], "synthetic", {"injected": None}, gen))


def _sampled(plan, cfg: SampleConfig, model: str, store: Path, gen: str | None = None, vllm=None,
             stats: dict | None = None) -> list[dict]:
    """Generate in chunks of `4 x batch_size`, each with its own seed (`chunk_sampling`), appending
    each chunk to the store as it finishes; every row of the plan, in order. `stats` adds up the
    prompts cut and generations shortened to fit the context."""
    sampling = Sampling(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                        seed=cfg.seed)
    with progress_bar(f"sample {gen or ''}") as progress:
        task = progress.add_task("sample", total=len(plan))
        return generate_resumable(
            store, plan, partial(make_backend, model, cfg, vllm), lambda item: conversation(item[1]["question"]),
            lambda item, text: _row(item[1], item[2], text, f"model:{model}", gen=gen), sampling,
            chunk=cfg.batch_size * 4,
            keys=[k for k, _, _ in plan], on_batch=lambda n: progress.advance(task, n),
            data_parallel=cfg.data_parallel, tensor_parallel=cfg.tensor_parallel, stats=stats)


def _existing(out: Path) -> list[dict] | None:
    """The rows of a finished solutions file critiquelab wrote; refuses a file it did not write."""
    if not out.exists():
        return None
    try:
        rows = read_jsonl(out)
    except UserError:  # not JSONL (or not UTF-8): not ours either
        rows = [{}]
    if rows and not all("key" in r and "source" in r for r in rows):
        raise UserError(f"--out {out}: exists and was not written by `critiquelab sample`; refusing to replace "
                        "it (choose another --out)")
    return rows


def run_sample(problems_path: str | Path | None, out_path: str | Path, cfg: SampleConfig,
               model_dir: str | Path | None = None, *, vllm=None, overwrite: bool = False) -> dict:
    """Write `out_path` (see the module doc); resumes an interrupted run. `vllm`: the engine
    settings (VLLMConfig) of a model source with backend vllm."""
    out = check_output_file(out_path)
    imported = cfg.source == "import" and not cfg.generators
    if imported:
        rows = import_solutions(cfg)  # one imported solution per problem, instant: no store
        problems = rows
        plan = [(stable_hash({"import": cfg.import_path, "row": r}, 16), r, 0) for r in rows]
    else:
        if problems_path is None:
            raise UserError(f"sample.source={cfg.source}: needs --problems FILE")
        problems = load_problems(problems_path)
        if cfg.problem_ids:  # e.g. one-shot CFT's one seed problem
            wanted = set(map(str, cfg.problem_ids))
            problems = [p for p in problems if str(p["id"]) in wanted]
            if missing := wanted - {str(p["id"]) for p in problems}:
                raise UserError(f"sample.problem_ids: {sorted(missing)} are not in {problems_path}")
        problems = problems[: cfg.n_problems]
        writers = _generators(cfg, model_dir)
        for _, g, _ in writers:
            if g.source == "synthetic" and any("steps" not in p or "solution" not in p for p in problems):
                raise UserError(f"{problems_path}: source=synthetic needs world problems (with 'steps'); "
                                "for your own problems use sample.source=model")
        plan = [item for name, g, model in writers for item in _plan(problems, g, model, name)]
    keys = [k for k, _, _ in plan]
    existing = _existing(out)
    if existing is not None and {r["key"] for r in existing} == set(keys):
        return _summary(existing, problems, resumed=True)
    if existing and not overwrite:
        raise UserError(f"--out {out}: holds solutions made from other problems or settings; pass --overwrite "
                        "to replace it, or choose another --out")
    store = Store(out.with_name(out.name + ".partial"))
    if imported:
        rows = [{"key": k, **r} for k, r, _ in plan]
    else:
        made: dict[str, dict] = {}
        fit: dict = {}
        for name, g, model in writers:  # one store for every writer (their keys differ)
            mine = _plan(problems, g, model, name)
            if g.source == "model":
                made.update((r["key"], r) for r in _sampled(mine, g, model, store.path, name, vllm, fit))
                continue
            wanted = {k for k, _, _ in mine}
            made.update((k, r) for k, r in store.read().items() if k in wanted)
            with store.writer() as append:
                def write(key: str, row: dict) -> None:
                    made[key] = {"key": key, **row}
                    append(made[key])

                _synthetic([item for item in mine if item[0] not in made], g, write, name)
        rows = [made[k] for k in keys]
    write_jsonl(out, rows)
    if not imported:
        store.path.unlink(missing_ok=True)
        return {**_summary(rows, problems), **fit_counts(fit)}
    return _summary(rows, problems)


def _generators(cfg: SampleConfig, model_dir) -> list[tuple[str | None, SampleConfig, str | None]]:
    """(name, settings, model) of each writer of solutions: `sample.generators`, or the section itself."""
    from dataclasses import replace

    from critiquelab.config import named_sections

    if not cfg.generators:
        table = {None: cfg}
    else:
        errors: list[str] = []
        table = named_sections(replace(cfg, generators={}), cfg.generators, "sample.generators", errors)
        errors += [f"sample.generators.{name}.source={g.source!r}: use model or synthetic"
                   for name, g in table.items() if g.source not in ("model", "synthetic")]
        if errors:
            raise UserError("invalid sample.generators: " + "; ".join(errors))
    writers = []
    for name, g in table.items():
        model = None
        if g.source == "model":
            if (g.model or model_dir) is None:
                raise UserError(f"sample.generators.{name}: source=model needs a model (--model, or model: in the "
                                "generator)" if name else "sample: source=model needs --model (a model directory "
                                "or hub name)")
            model = check_model(g.model or model_dir, f"sample.generators.{name}.model" if name else "--model")
            check_parallel(g.backend, g.data_parallel, g.tensor_parallel, "sample")
        writers.append((name, g, model))
    return writers


def _summary(rows: list[dict], problems: list[dict], resumed: bool = False) -> dict:
    graded = [r["correct"] for r in rows if r["correct"] is not None]
    return {"solutions": len(rows), "problems": len(problems), "already_done": resumed, "graded": len(graded),
            "share_correct": sum(graded) / len(graded) if graded else None}


def summary_line(s: dict, out: str | Path) -> str:
    """`sample`'s one-line summary of `run_sample`'s result: the share correct, what was not graded
    and what did not fit the context."""
    done = " (already complete)" if s["already_done"] else ""
    ungraded = s["solutions"] - s["graded"]
    graded = "not graded: their problems have no answer" if not s["graded"] else \
        f"share correct: {s['share_correct']:.1%}" + (f" of the {s['graded']} graded; {ungraded} not graded: "
                                                     "their problems have no answer" if ungraded else "")
    return f"wrote {s['solutions']} solutions to {out}{done} ({graded}){fit_note(s)}"


# ---------------------------------------------------------------------------------------------
# Seed problems for one-shot CFT (Wang et al. 2025, arXiv 2506.03295): one problem of medium
# difficulty for the base model works best; very easy or very hard ones give less.

SEED_TARGETS = {"easy": 0.85, "medium": 0.5, "hard": 0.15}  # pass rates each difficulty is picked nearest


def rank_seeds(solutions: list[dict], targets: dict[str, float] | None = None) -> dict:
    """Candidate seeds ranked by the base model's pass rate over its k graded samples each, and the
    problem picked for each difficulty: the pass rate nearest its target (ties: a fixed hash order)."""
    targets = targets or SEED_TARGETS
    graded: dict[str, list[dict]] = {}
    for row in solutions:
        if isinstance(row.get("correct"), bool):
            graded.setdefault(row["problem_id"], []).append(row)
    ranked = [{"problem_id": pid, "question": rows[0]["question"], "answer": rows[0].get("answer"), "k": len(rows),
               "pass_rate": sum(r["correct"] for r in rows) / len(rows)} for pid, rows in graded.items()]
    ranked.sort(key=lambda r: (-r["pass_rate"], stable_hash(r["problem_id"])))
    picks = {name: min(ranked, key=lambda r, t=t: (abs(r["pass_rate"] - t), stable_hash(r["problem_id"])))
             for name, t in targets.items()} if ranked else {}
    return {"targets": targets, "picks": {n: p["problem_id"] for n, p in picks.items()}, "ranked": ranked,
            "problems": len(ranked), "ungraded": len({r["problem_id"] for r in solutions}) - len(ranked)}


def run_seeds(problems_path: str | Path, out_dir: str | Path, cfg: SampleConfig, model_dir: str | Path, *,
              vllm=None, overwrite: bool = False) -> dict:
    """Sample `cfg.n_per_problem` solutions of each problem from the base model (resumable), grade
    them, and write `seeds.json`: every problem's pass rate and the easy / medium / hard picks."""
    from critiquelab.io import output_dir, write_json

    if cfg.source != "model":
        raise UserError("seeds: the pass rates come from the base model's own samples (sample.source=model)")
    if cfg.n_per_problem < 2:
        raise UserError(f"seeds: sample.n_per_problem={cfg.n_per_problem}: a pass rate needs k >= 2 samples "
                        "per problem (e.g. --k 8)")
    with output_dir(out_dir, "seeds", overwrite=overwrite) as (out, _):
        run_sample(problems_path, out / "solutions.jsonl", cfg, model_dir, vllm=vllm, overwrite=overwrite)
        result = rank_seeds(read_jsonl(out / "solutions.jsonl"))
        if not result["ranked"]:
            raise UserError(f"{problems_path}: no problem has a reference answer, so no pass rate can be measured")
        write_json(out / "seeds.json", {"model": str(model_dir), "k": cfg.n_per_problem,
                                        "temperature": cfg.temperature, **result})
    return result


def seeds_summary_line(res: dict, out: str | Path, k: int) -> str:
    """`seeds`' one-line summary: the problems ranked over `k` samples each, and each difficulty's pick."""
    rate = {r["problem_id"]: r["pass_rate"] for r in res["ranked"]}
    picks = ", ".join(f"{n} {p} ({rate[p]:.0%})" for n, p in res["picks"].items())
    return f"{res['problems']} problems ranked by pass rate over {k} samples in {out}/seeds.json; {picks}"
