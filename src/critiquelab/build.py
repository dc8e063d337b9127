"""Training sets from solutions and critiques: variants, filters and exports.

Variants, all from the same items (TRL conversational prompt-completion rows):
- `sft_reference`: question -> reference solution (one per problem)
- `sft_noisy`: question -> the noisy candidate solution
- `sft_verified`: question -> noisy solutions the teacher judged right
- `sft_teacher`: question -> the teacher's own solution (a `critique` run with the `solve_paper`
  prompt writes them; pass its `solutions.jsonl` as `teacher_solutions`), one per problem
- `cft`: "critique this" + `Question:\\n{q}\\n\\nSolution:\\n{s}` -> the teacher's critique
- `cft_sft_mix`: CFT and SFT-reference examples, `mix_ratio` of them CFT
- `cgd` (Critique-Guided Distillation, arXiv 2505.11628): the student's own solution and the
  teacher's critique of it -> the teacher's refined solution (`critiquelab refine` writes them;
  pass its `refined.jsonl` as `refined`). The system prompt is SFT's (`system_prompt`); the user
  message is `cgd_prompt`'s layout:

      Question:
      {question}

      Your answer:
      {solution}

      Critique of your answer:
      {critique}

      Write a refined solution: fix what the critique found and end with the final answer in \\boxed{}.

  and the completion (the only tokens with a loss) is the refined solution. At inference a cgd model
  sees the bare question, as an SFT model does. A refined solution whose boxed answer grades wrong
  against the reference answer is dropped unless `cgd_keep_wrong` (one without a reference answer is
  kept, counted as unchecked); the counts are in the manifest (`cgd`).

Filters, each reported with counts in `dataset/manifest.json`: dedupe (normalised question
text), decontamination (word n-gram overlap with every benchmark test set), and verdict
consistency (the teacher's verdict against the reference-graded correctness: keep, drop or flag).

Inputs: `solutions.jsonl` and the critique store (and the teacher's solutions or refinements for
sft_teacher and cgd). Output: `dataset/<variant>.jsonl`, exports (`export.py`) and
`dataset/manifest.json`.

    critiquelab build --solutions runs/demo/solutions.jsonl --critiques runs/demo/critique/critiques.jsonl --out runs/demo/dataset
    critiquelab build --solutions S --critiques C/critiques.jsonl --refined R/refined.jsonl --out D 'build.methods=[cgd]'
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

from critiquelab.config import BuildConfig, key_of
from critiquelab.critique import input_hash, read_critiques, read_store
from critiquelab.grading import grade
from critiquelab.io import (
    UserError,
    check_rows,
    output_dir,
    read_jsonl,
    sha256_file,
    stable_hash,
    write_json,
    write_jsonl,
)
from critiquelab.methods import TABLE, names
from critiquelab.sources import benchmark_questions

__all__ = ["METHODS", "CGD_INSTRUCTION", "cft_prompt", "cft_example", "cgd_prompt", "cgd_example", "sft_example",
           "decontaminate", "filter_questions", "run_build", "summary_line"]

METHODS = names("sft", "cft", "cgd")  # the variants built here (methods.py)
CGD_INSTRUCTION = "Write a refined solution: fix what the critique found and end with the final answer in \\boxed{}."


def cft_prompt(question: str, solution: str, instruction: str) -> str:
    return f"{instruction}\n\nQuestion:\n{question}\n\nSolution:\n{solution}"


def cgd_prompt(question: str, solution: str, critique: str) -> str:
    """A cgd example's user message: the question, the student's own answer, the critique of it."""
    return (f"Question:\n{question}\n\nYour answer:\n{solution}\n\nCritique of your answer:\n{critique}\n\n"
            f"{CGD_INSTRUCTION}")


def sft_example(system: str, question: str, answer: str) -> dict:
    prompt = [{"role": "system", "content": system}] if system else []
    return {"prompt": prompt + [{"role": "user", "content": question}],
            "completion": [{"role": "assistant", "content": answer}]}


def cft_example(instruction: str, question: str, solution: str, critique: str) -> dict:
    return {"prompt": [{"role": "user", "content": cft_prompt(question, solution, instruction)}],
            "completion": [{"role": "assistant", "content": critique}]}


def cgd_example(system: str, question: str, solution: str, critique: str, refined: str) -> dict:
    prompt = [{"role": "system", "content": system}] if system else []
    return {"prompt": prompt + [{"role": "user", "content": cgd_prompt(question, solution, critique)}],
            "completion": [{"role": "assistant", "content": refined}]}


def _norm(q: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", q.lower())).strip()


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _norm(text).split()
    return {tuple(words[i:i + n]) for i in range(max(0, len(words) - n + 1))}


def decontaminate(rows: list[dict], n: int, threshold: float, bench_dir=None) -> tuple[list[dict], dict]:
    """Drop rows whose question shares >= `threshold` of its word n-grams with a benchmark question."""
    index: dict[tuple[str, ...], str] = {}
    for name, question in benchmark_questions(bench_dir):  # a benchmark file that is not present cannot contaminate
        for g in _ngrams(question, n):
            index.setdefault(g, name)
    kept, removed = [], {}
    for r in rows:
        grams = _ngrams(r["question"], n)
        hits = [index[g] for g in grams if g in index]
        if grams and len(hits) / len(grams) >= threshold:
            removed[hits[0]] = removed.get(hits[0], 0) + 1
        else:
            kept.append(r)
    return kept, removed


def filter_questions(solutions: list[dict], cfg: BuildConfig, bench_dir=None) -> tuple[list[dict], dict]:
    """`build.dedupe` (one problem text, with all its solutions, per normalised question) and
    `build.decontaminate`: what every training set is made from, RL's pool included."""
    report: dict = {}
    if cfg.dedupe:
        owner: dict[str, str] = {}
        kept = []
        for s in solutions:
            pid = owner.setdefault(_norm(s["question"]), s.get("problem_id", s["id"]))
            if pid == s.get("problem_id", s["id"]):
                kept.append(s)
        report["dedupe_removed"] = len(solutions) - len(kept)
        solutions = kept
    if cfg.decontaminate:
        solutions, removed = decontaminate(solutions, cfg.ngram, cfg.overlap_threshold, bench_dir)
        report["decontaminate_removed"] = removed
    return solutions, report


SOLUTION_FIELDS = {"id": (str, int), "question": str, "solution": str}
SOLUTION_OPTIONAL = {"problem_id": (str, int), "correct": bool, "reference_solution": str, "answer": (str, int, float)}
NEEDS_CRITIQUES = tuple(m for m in METHODS if TABLE[m].needs_critiques)
# What a method needs in the solutions beyond question and solution: (field, what it is and where it comes from).
NEEDS_FIELD = {m: TABLE[m].needs_field for m in METHODS if TABLE[m].needs_field}


def unsupported_methods(methods: list[str], solutions: list[dict]) -> dict[str, str]:
    """The methods in `methods` whose field no solution carries, each with what it needs."""
    return {m: NEEDS_FIELD[m][1] for m in methods
            if m in NEEDS_FIELD and not any(s.get(NEEDS_FIELD[m][0]) not in (None, "") for s in solutions)}


def read_solutions(path: str | Path) -> list[dict]:
    rows = read_jsonl(path, what="solutions")
    check_rows(rows, path, SOLUTION_FIELDS, optional=SOLUTION_OPTIONAL, unique="id",
               fix="expected rows of `critiquelab sample` (see docs/formats.md)")
    return rows


def every_critique(path: str | Path) -> dict[tuple[str, str], list[dict]]:
    """(id, input hash) -> every teacher's ok critique of that text (a panel's store), in store order."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in read_store(path).values():
        if r["status"] == "ok":
            out.setdefault((r["id"], r.get("input")), []).append(r)
    return out


def _panel_examples(s: dict, critiques: list[dict], cfg: BuildConfig) -> tuple[list[dict], int]:
    """CFT examples from every teacher's critique of solution `s`, with the reference-grade filter
    (`consistency`) and, with `majority`, the teachers' majority verdict; returns (examples, outvoted)."""
    verdicts = Counter(c["verdict"] for c in critiques if c["verdict"] is not None)
    top = verdicts.most_common(2)
    majority = top[0][0] if top and (len(top) == 1 or top[0][1] > top[1][1]) else None  # a tie has none
    rows, outvoted = [], 0
    for c in critiques:
        verdict = c["verdict"]
        mismatch = verdict is not None and s.get("correct") is not None and (verdict == "right") != s["correct"]
        if (cfg.require_verdict and verdict is None) or (mismatch and cfg.consistency == "drop"):
            continue
        if cfg.majority and verdict != majority:
            outvoted += 1
            continue
        ex = cft_example(cfg.critique_instruction, s["question"], s["solution"], c["critique"])
        ex["teacher"] = c.get("teacher_name") or c.get("teacher")
        if mismatch and cfg.consistency == "flag":
            ex["flag"] = "verdict_disagrees_with_reference"
        rows.append(ex)
    return rows, outvoted


def run_build(solutions_path: str | Path, critiques_path: str | Path, out_dir: str | Path,
              cfg: BuildConfig, bench_dir=None, teacher_solutions: str | Path | None = None,
              allow_empty: bool = False, overwrite: bool = False, pick_methods: bool = False,
              refined: str | Path | None = None) -> dict:
    """Write every variant in `cfg.methods`; an empty one is an error unless `allow_empty` (a grid,
    where that method's cells are skipped and the others go on). A method whose input no solution
    carries (sft_reference without reference solutions) is an error naming it and the setting, or,
    with `pick_methods` (methods not chosen by the user), left out and listed in `skipped_methods`.
    Nothing is written until every input is checked and every set is built."""
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise UserError(f"build.methods: unknown {unknown} (valid: {', '.join(METHODS)})")
    if cfg.exports:
        from critiquelab.export import check_formats

        check_formats(cfg.exports)
    if (solving := [m for m in cfg.methods if TABLE[m].teacher_solves]) and not teacher_solutions:
        raise UserError(f"build: {solving[0]} needs the teacher's own solutions: run `critiquelab critique "
                        "critique.prompt=solve_paper --out T`, then build with --teacher-solutions T/solutions.jsonl")
    if (refining := [m for m in cfg.methods if TABLE[m].teacher_refines]) and not refined:
        raise UserError(f"build: {refining[0]} needs the teacher's refined solutions: run `critiquelab refine --input "
                        "SOLUTIONS --critiques CRITIQUES --out R`, then build with --refined R/refined.jsonl")
    solutions = read_solutions(solutions_path)
    skipped = {} if allow_empty else unsupported_methods(cfg.methods, solutions)
    kept = [m for m in cfg.methods if m not in skipped]
    if skipped and (not pick_methods or not kept):
        m, needs = next(iter(skipped.items()))
        fix = f"build.methods=[{','.join(kept)}]" if kept else "build.methods=[sft_noisy,cft]"
        raise UserError(f"build: {m} needs {needs}, and no row of {solutions_path} has one; add them, or build "
                        f"the other methods: {fix}")
    cfg = replace(cfg, methods=kept)
    critiques = read_critiques(critiques_path, needed=any(m in NEEDS_CRITIQUES for m in cfg.methods))
    solved = read_critiques(teacher_solutions, "--teacher-solutions") if teacher_solutions else {}
    fixed = read_critiques(refined, "--refined") if refined and "cgd" in cfg.methods else {}
    panel = every_critique(critiques_path) if cfg.critiques_per_solution == "all" else None
    report: dict = {"solutions": len(solutions), **({"skipped_methods": skipped} if skipped else {})}

    solutions, filtered = filter_questions(solutions, cfg, bench_dir)
    report.update(filtered)

    disagree = no_verdict = outvoted = unlabelled = 0
    cgd = Counter()  # refined solutions: graded wrong, kept wrong, unchecked, none for a solution
    data: dict[str, list[dict]] = {m: [] for m in cfg.methods}
    refs, cft_rows, seen_problems, seen_solved = [], [], set(), set()  # refs: one per problem
    for s in solutions:
        c = critiques.get((s["id"], input_hash(s)))  # a critique of this very text, never of an older one
        verdict = c["verdict"] if c else None
        no_verdict += verdict is None
        mismatch = verdict is not None and s.get("correct") is not None and (verdict == "right") != s["correct"]
        disagree += mismatch
        unlabelled += verdict is not None and s.get("correct") is None  # nothing to check the verdict against
        if s.get("reference_solution") and s["problem_id"] not in seen_problems:
            seen_problems.add(s["problem_id"])
            refs.append(sft_example(cfg.system_prompt, s["question"], s["reference_solution"]))
        t = solved.get((s["id"], input_hash(s)))
        if "sft_teacher" in data and t and t.get("solution") and s["problem_id"] not in seen_solved:
            seen_solved.add(s["problem_id"])
            data["sft_teacher"].append(sft_example(cfg.system_prompt, s["question"], t["solution"]))
        if "sft_noisy" in data and s["solution"].strip():
            data["sft_noisy"].append(sft_example(cfg.system_prompt, s["question"], s["solution"]))
        if "sft_correct" in data and s.get("correct") is True:  # graded right against the reference answer
            data["sft_correct"].append(sft_example(cfg.system_prompt, s["question"], s["solution"]))
        if "cgd" in data:  # the refinement of this very solution from this very critique
            r = fixed.get((s["id"], input_hash({**s, "critique": c["critique"]}, "refine"))) if c else None
            if r is None or not r["solution"].strip():
                cgd["no_refinement"] += 1
            else:
                right = grade(r["solution"], str(s["answer"])).correct if s.get("answer") is not None else None
                cgd["unchecked" if right is None else "right" if right else "wrong"] += 1
                if right is not False or cfg.cgd_keep_wrong:
                    data["cgd"].append(cgd_example(cfg.system_prompt, s["question"], s["solution"], c["critique"],
                                                   r["solution"]))
        if panel is not None:  # every teacher's critique, each filtered on its own
            examples, dropped = _panel_examples(s, panel.get((s["id"], input_hash(s)), []), cfg)
            cft_rows += examples
            outvoted += dropped
        if c is None or (mismatch and cfg.consistency == "drop") or (cfg.require_verdict and verdict is None):
            continue
        if "sft_verified" in data and verdict == "right":
            data["sft_verified"].append(sft_example(cfg.system_prompt, s["question"], s["solution"]))
        if panel is None:
            ex = cft_example(cfg.critique_instruction, s["question"], s["solution"], c["critique"])
            if mismatch and cfg.consistency == "flag":
                ex["flag"] = "verdict_disagrees_with_reference"
            cft_rows.append(ex)
    if "sft_reference" in data:
        data["sft_reference"] = refs
    if "cft" in data:
        data["cft"] = cft_rows
    if "cft_sft_mix" in data:
        n_sft = round(len(cft_rows) * (1 - cfg.mix_ratio) / max(cfg.mix_ratio, 1e-9))
        mix = cft_rows + refs[:n_sft]
        random.Random(cfg.seed).shuffle(mix)
        data["cft_sft_mix"] = mix
    report["verdict_disagreements"] = {"count": disagree, "policy": cfg.consistency, "unlabelled": unlabelled}
    report["no_critique_or_verdict"] = no_verdict
    if "cgd" in data:
        report["cgd"] = {"kept": len(data["cgd"]), "right": cgd["right"], "wrong": cgd["wrong"],
                         "dropped_wrong": 0 if cfg.cgd_keep_wrong else cgd["wrong"], "unchecked": cgd["unchecked"],
                         "no_refinement": cgd["no_refinement"], "policy": "keep" if cfg.cgd_keep_wrong else "drop"}
    if panel is not None:
        report["critiques_per_solution"] = {"policy": "all", "critiques": sum(len(v) for v in panel.values()),
                                            "majority_dropped": outvoted if cfg.majority else None}

    counts = {m: len(rows) for m, rows in data.items()}
    empty = [m for m, n in counts.items() if n == 0]
    if empty and not allow_empty:
        others = ",".join(m for m in cfg.methods if m not in empty)
        fix = f", or build the others: build.methods=[{others}]" if others else ""
        raise UserError(f"build: the {', '.join(empty)} set(s) came out empty (check the solutions, critiques "
                        f"and filters{fix}); nothing written")
    inputs = [Path(p) for p in (solutions_path, critiques_path, teacher_solutions, refined) if p]
    fingerprint = stable_hash({"build": key_of(cfg), "inputs": [sha256_file(p) for p in inputs]})
    with output_dir(out_dir, "dataset", fingerprint=fingerprint, overwrite=overwrite) as (out_dir, _):
        for m, rows in data.items():
            write_jsonl(out_dir / f"{m}.jsonl", rows)
        if cfg.exports:
            from critiquelab.export import export_all

            report["exports"] = export_all(out_dir, data, cfg.exports)
        write_json(out_dir / "manifest.json", {"stage": "build", "counts": counts, "filters": report,
                                               "inputs": [str(p) for p in inputs]})
    return {"counts": counts, **report}


def summary_line(res: dict, out: str | Path) -> str:
    """`build`'s one-line summary of `run_build`'s result: the sets, the methods left out, and what
    each filter did."""
    sets = ", ".join(f"{m} {n}" for m, n in res["counts"].items())
    skipped = "".join(f"; {m} not built: it needs {why} (ask for it with build.methods)"
                      for m, why in res.get("skipped_methods", {}).items())
    removed = res.get("decontaminate_removed")
    contamination = "decontamination off" if removed is None else \
        f"{sum(removed.values())} decontaminated" + (f" ({', '.join(f'{b} {n}' for b, n in removed.items())})"
                                                     if removed else "")
    duplicates = "dedupe off" if res.get("dedupe_removed") is None else f"{res['dedupe_removed']} duplicates removed"
    v = res["verdict_disagreements"]
    action = {"keep": "kept", "drop": "dropped", "flag": "kept, flagged"}[v["policy"]]
    unchecked = f", {v['unlabelled']} kept unchecked (no reference grade)" if v.get("unlabelled") else ""
    g = res.get("cgd")
    cgd = "" if g is None else (f", cgd: {g['wrong']} refined solutions wrong against the reference "
                                f"({'kept' if g['policy'] == 'keep' else 'dropped'}), {g['unchecked']} unchecked (no "
                                f"reference answer), {g['no_refinement']} solutions without a refinement")
    return (f"wrote datasets to {out}: {sets}{skipped}; filters: {duplicates}, {contamination}, "
            f"{v['count']} verdicts disagree with the reference grade ({action}){unchecked}, "
            f"{res['no_critique_or_verdict']} solutions without a critique or verdict{cgd}")
