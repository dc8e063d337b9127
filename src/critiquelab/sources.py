"""Problem sources: the seven math benchmarks, the synthetic world, and user JSONL.

Every loader returns rows `{"id", "question", "answer", ...}`; `answer` is the reference as a
string (None when a file has none). Benchmarks are read by path from `../shared/benchmarks`
(override with `--benchmarks-dir` or `CRITIQUELAB_BENCHMARKS`); nothing is downloaded.

    critiquelab eval --model M --benchmarks world,gsm8k --limit 50
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from critiquelab.io import UserError, check_rows, read_jsonl

log = logging.getLogger(__name__)

__all__ = ["BENCHMARKS", "benchmarks_dir", "benchmark_file_name", "load_benchmark", "last_boxed", "load_problems"]


def benchmarks_dir(override: str | Path | None = None) -> Path:
    if override:
        return Path(override)
    if os.environ.get("CRITIQUELAB_BENCHMARKS"):
        return Path(os.environ["CRITIQUELAB_BENCHMARKS"])
    # The repository sits beside ../shared in a checkout; fall back to the working directory's.
    here = Path(__file__).resolve().parents[3] / "shared" / "benchmarks"
    return here if here.is_dir() else Path.cwd().parent / "shared" / "benchmarks"


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...}, nested braces included."""
    best = None
    for key in ("\\boxed", "\\fbox"):
        i = text.rfind(key)
        if i >= 0 and (best is None or i > best[0]):
            best = (i, key)
    if best is None:
        return None
    i = best[0] + len(best[1])
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth, start = 0, i
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:j].strip()
    return None


def _number(x) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def _math500(r: dict, i: int) -> dict:
    return {"id": r.get("unique_id", f"math-500-{i}"), "question": r["problem"], "answer": r["answer"],
            "solution": r.get("solution")}


def _minerva(r: dict, i: int) -> dict:
    return {"id": f"minerva_math-{i}", "question": r["problem"], "answer": last_boxed(r["solution"]),
            "solution": r["solution"]}


def _gsm8k(r: dict, i: int) -> dict:
    answer = r["answer"].split("####")[-1].strip().replace(",", "") if "####" in r["answer"] else None
    return {"id": f"gsm8k-{i}", "question": r["question"], "answer": answer}


def _olympiad(r: dict, i: int) -> dict:
    answers = r["final_answer"]
    if isinstance(answers, str):
        answers = json.loads(answers)
    question = r["question"] if not r.get("context") else r["context"] + "\n" + r["question"]
    return {"id": f"olympiadbench-{r.get('id', i)}", "question": question,
            "answer": ", ".join(a.strip("$ ") for a in answers), "unit": r.get("unit")}


def _aime(r: dict, i: int) -> dict:
    return {"id": f"aime24-{r.get('id', i)}", "question": r["problem"], "answer": _number(r["answer"])}


def _amc(r: dict, i: int) -> dict:
    return {"id": f"amc23-{r.get('id', i)}", "question": r["problem"], "answer": _number(r["answer"])}


def _theoremqa(r: dict, i: int) -> dict:
    return {"id": f"theoremqa-{i}", "question": r["problem"], "answer": str(r["answer"])}


# name -> (folder, file, row converter)
BENCHMARKS = {
    "math-500": ("math-500", "test.jsonl", _math500),
    "minerva_math": ("minerva_math", "test.jsonl", _minerva),
    "gsm8k": ("gsm8k", "test.jsonl", _gsm8k),
    "olympiadbench": ("olympiadbench", "test.jsonl", _olympiad),
    "aime24": ("aime24", "test.jsonl", _aime),
    "amc23": ("amc23", "test.jsonl", _amc),
    "theoremqa": ("theoremqa", "test.jsonl", _theoremqa),
}
WORLD_BENCHMARKS = {"world": "test.jsonl", "world-validation": "validation.jsonl"}


def load_benchmark(name: str, *, bench_dir: str | Path | None = None, world_dir: str | Path | None = None,
                   limit: int | None = None) -> list[dict]:
    if name in WORLD_BENCHMARKS:
        if world_dir is None:
            raise UserError(f"benchmark {name!r} needs a world directory (--world DIR)")
        path = Path(world_dir) / WORLD_BENCHMARKS[name]
        rows = read_jsonl(path, what="items to evaluate")
        check_rows(rows, path, {"id": (str, int), "question": str, "answer": (str, int, float)}, unique="id",
                   fix="is --world a directory written by `critiquelab world`?")
    elif name in BENCHMARKS:
        folder, file, convert = BENCHMARKS[name]
        path = benchmarks_dir(bench_dir) / folder / file
        if not path.is_file():
            raise UserError(f"{path}: benchmark file not found (set --benchmarks-dir or CRITIQUELAB_BENCHMARKS)")
        rows = []
        for i, r in enumerate(read_jsonl(path, what="items to evaluate")):
            try:
                rows.append(convert(r, i))
            except (KeyError, TypeError, ValueError) as e:
                raise UserError(f"{path}:{i + 1}: unexpected row layout ({type(e).__name__}: {e})") from None
    elif name.endswith(".jsonl"):  # your own problems file, e.g. a validation set for checkpoint selection
        if not Path(name).is_file():
            raise UserError(f"{name}: benchmark file not found (a problems JSONL with id, question and answer)")
        rows = load_problems(name, need_answers="a benchmark needs reference answers to grade")
    else:
        valid = ", ".join([*WORLD_BENCHMARKS, *BENCHMARKS])
        raise UserError(f"unknown benchmark {name!r} (valid: {valid}, or a problems .jsonl file)")
    return rows[:limit] if limit is not None else rows


def benchmark_file_name(name: str) -> str:
    """Where a benchmark's items go in an eval directory: its name, or a problems file's stem."""
    return f"{Path(name).stem}.jsonl" if name.endswith(".jsonl") else f"{name}.jsonl"


PROBLEM_FIELDS = {"id": (str, int), "question": str}
PROBLEM_OPTIONAL = {"answer": (str, int, float), "solution": str}
# Keys other datasets keep the reference answer under: named in the hint when `answer` is missing.
ANSWER_LIKE = ("final_answer", "gold", "gold_answer", "target", "label", "ground_truth", "reference",
               "reference_answer", "expected_answer", "expected", "answers", "result")


def missing_answers(rows: list[dict], path: str | Path) -> str | None:
    """A note on the problems without an `answer` (None when every one has it): the counts, an
    example id and, when those rows carry an answer-like key, the hint to rename it."""
    missing = [r for r in rows if r.get("answer") in (None, "")]
    if not missing:
        return None
    keys = sorted({k for r in missing for k in r if k.lower() in ANSWER_LIKE})
    hint = f" (they have {keys[0]!r}: if that is the reference answer, rename it to 'answer')" if keys else ""
    count = f"none of the {len(rows)} problems has an answer" if len(missing) == len(rows) else \
        f"{len(missing)} of {len(rows)} problems have no answer"
    return f"{path}: {count} (e.g. id {missing[0]['id']!r}){hint}"


def load_problems(path: str | Path, need_answers: str | None = None) -> list[dict]:
    """User JSONL of problems: a unique `id` and a `question`; `answer` (the reference, for
    grading) and `solution` (a reference solution) optional. Numbers as answers become text.
    Problems without an answer are a warning (their solutions are not graded), or an error saying
    `need_answers` (why grading is required) when that is given."""
    rows = read_jsonl(path, what="problems")
    check_rows(rows, path, PROBLEM_FIELDS, optional=PROBLEM_OPTIONAL, unique="id",
               fix="a problem row is {\"id\": ..., \"question\": \"...\", \"answer\": \"...\"}")
    for r in rows:
        if isinstance(r.get("answer"), (int, float)):
            r["answer"] = str(r["answer"])
    if note := missing_answers(rows, path):
        if need_answers:
            raise UserError(f"{note}; {need_answers}")
        log.warning("%s: their solutions are not graded", note)
    return rows
