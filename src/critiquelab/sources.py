"""Problem sources: the seven math benchmarks, GPQA-Diamond and three BBEH tasks, the synthetic
world, and user JSONL.

Every loader returns rows `{"id", "question", "answer", ...}`; `answer` is the reference as a
string (None when a file has none). Rows of a benchmark that is not `math` also carry their
`answer_type` (`choice`, `bbeh`: answers.py grades them). Benchmarks are read by path from
`../shared/benchmarks` (override with `--benchmarks-dir` or `CRITIQUELAB_BENCHMARKS`); nothing
is downloaded.

GPQA-Diamond's four options have no order of their own: item `<Record ID>` under permutation j
(of `choice_permutations`) puts them in the order `random.Random(seed).shuffle` gives, seeded
with the first 16 hex digits of sha256("<Record ID>:<j>") (deterministic, one seed per item and
permutation). Two prompts (`choice_prompt`): `boxed` (ours: the options one per line, then
"Answer with the letter of the correct option, as \\boxed{X}.") and `official` (the question,
then `Answer Choices: (A) ... (B) ... (C) ... (D) ...`, with no format instruction). BBEH's
inputs carry their task's own instructions; the boxed-answer line is added after them.

    critiquelab eval --model M --benchmarks world,gsm8k --limit 50
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from critiquelab.io import UserError, check_rows, read_json, read_jsonl

log = logging.getLogger(__name__)

__all__ = ["ANSWER_TYPES", "BENCHMARKS", "LETTERS", "answer_problem", "benchmarks_dir", "benchmark_file_name",
           "choice_letter", "load_benchmark", "last_boxed", "load_problems", "benchmark_questions"]

ANSWER_TYPES = ("math", "choice", "bbeh")  # answers.py grades each; config.EvalConfig.answer_type names them
LETTERS = "ABCDEFGHIJ"  # the option letters a choice answer may take, unless a row names its own (`letters`)


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
    return braced(text, i)


def braced(text: str, i: int) -> str | None:
    """The content of the `{...}` group that opens at `text[i]`, nested braces included, stripped
    (None when it never closes)."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j].strip()
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


def _gpqa(r: dict, i: int) -> dict:
    options = [r["Correct Answer"], r["Incorrect Answer 1"], r["Incorrect Answer 2"], r["Incorrect Answer 3"]]
    if not all(isinstance(o, str) and o.strip() for o in options) or not isinstance(r["Question"], str):
        raise ValueError("'Question' and the four answers must be non-empty text")
    return {"id": f"gpqa_diamond-{r.get('Record ID') or i}", "question": r["Question"].strip(),
            "answer": options[0].strip(), "options": [o.strip() for o in options]}


def _bbeh(r: dict, i: int) -> dict:
    if not isinstance(r["input"], str) or not isinstance(r["target"], str) or not r["target"].strip():
        raise ValueError("'input' and 'target' must be text, the target not empty")
    return {"id": str(i), "question": r["input"], "answer": r["target"]}


BOXED_LETTER = "Answer with the letter of the correct option, as \\boxed{X}."
BOXED_ANSWER = "Think step by step, then give your final answer within \\boxed{}."


def _permuted(row: dict, j: int, prompt: str) -> dict:
    """GPQA item `row` under permutation j: its options shuffled by the item's own seed."""
    seed = int(hashlib.sha256(f"{row['id'].removeprefix('gpqa_diamond-')}:{j}".encode()).hexdigest()[:16], 16)
    order = list(range(len(row["options"])))
    random.Random(seed).shuffle(order)
    letters = LETTERS[:len(order)]
    options = [row["options"][k] for k in order]
    if prompt == "official":
        question = f"{row['question']}\n\nAnswer Choices: " + " ".join(
            f"({a}) {o}" for a, o in zip(letters, options, strict=True))
    else:
        question = f"{row['question']}\n\n" + "\n".join(
            f"({a}) {o}" for a, o in zip(letters, options, strict=True)) + f"\n\n{BOXED_LETTER}"
    return {"id": f"{row['id']}-p{j}", "question": question, "answer": letters[order.index(0)],
            "answer_type": "choice", "letters": letters, "options": options, "question_id": row["id"],
            "permutation": j}


class Bench(NamedTuple):
    folder: str
    file: str
    convert: Callable[[dict, int], dict]
    answer_type: str = "math"


# name -> where its file is, how a row converts, what its answers are
BENCHMARKS = {
    "math-500": Bench("math-500", "test.jsonl", _math500),
    "minerva_math": Bench("minerva_math", "test.jsonl", _minerva),
    "gsm8k": Bench("gsm8k", "test.jsonl", _gsm8k),
    "olympiadbench": Bench("olympiadbench", "test.jsonl", _olympiad),
    "aime24": Bench("aime24", "test.jsonl", _aime),
    "amc23": Bench("amc23", "test.jsonl", _amc),
    "theoremqa": Bench("theoremqa", "test.jsonl", _theoremqa),
    "gpqa_diamond": Bench("gpqa_diamond", "test.jsonl", _gpqa, "choice"),
    "bbeh_causal_understanding": Bench("bbeh", "causal_understanding.json", _bbeh, "bbeh"),
    "bbeh_disambiguation_qa": Bench("bbeh", "disambiguation_qa.json", _bbeh, "bbeh"),
    "bbeh_time_arithmetic": Bench("bbeh", "time_arithmetic.json", _bbeh, "bbeh"),
}
WORLD_BENCHMARKS = {"world": "test.jsonl", "world-validation": "validation.jsonl"}
PRMBENCH = "prmbench"  # the critic benchmark's folder (prmbench.py reads it)


def _raw_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(where, row) of a benchmark file: JSONL lines (`file:line`), or BBEH's {"examples": [...]}
    (`file: examples[i]`)."""
    if path.suffix == ".json":
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("examples"), list) or not data["examples"]:
            raise UserError(f"{path}: expected BBEH's layout {{\"examples\": [{{\"input\", \"target\"}}, ...]}}")
        yield from ((f"{path}: examples[{i}]", r) for i, r in enumerate(data["examples"]))
    else:
        rows = read_jsonl(path, what="items to evaluate")
        yield from ((f"{path}:{line}", r) for r, line in zip(rows, rows.lines, strict=True))


def _builtin(name: str, bench_dir, permutations: int, choice_prompt: str) -> list[dict]:
    b = BENCHMARKS[name]
    path = benchmarks_dir(bench_dir) / b.folder / b.file
    if not path.is_file():
        raise UserError(f"{path}: benchmark file not found (set --benchmarks-dir or CRITIQUELAB_BENCHMARKS)")
    rows = []
    for i, (where, r) in enumerate(_raw_rows(path)):
        try:
            if not isinstance(r, dict):
                raise TypeError("a row must be a JSON object")
            row = b.convert(r, i)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{where}: unexpected row layout ({type(e).__name__}: {e})") from None
        if b.answer_type == "bbeh":
            rows.append({**row, "id": f"{name}-{i}", "question": f"{row['question']}\n\n{BOXED_ANSWER}",
                         "answer_type": "bbeh"})
        elif b.answer_type == "choice":
            rows += [_permuted(row, j, choice_prompt) for j in range(permutations)]
        else:
            rows.append(row)
    return rows


def load_benchmark(name: str, *, bench_dir: str | Path | None = None, world_dir: str | Path | None = None,
                   limit: int | None = None, answer_type: str | None = None, choice_permutations: int = 1,
                   choice_prompt: str = "boxed", hf_fields: dict | None = None) -> list[dict]:
    """A benchmark's rows (the first `limit` items; with `choice_permutations` k, a choice
    benchmark has k rows per item). `answer_type` (eval.answer_type) says how a problems file's
    answers are graded, and must agree with a built-in benchmark's own type."""
    if name in WORLD_BENCHMARKS:
        if world_dir is None:
            raise UserError(f"benchmark {name!r} needs a world directory (--world DIR)")
        _check_type_fits(name, "math", answer_type)
        path = Path(world_dir) / WORLD_BENCHMARKS[name]
        rows = read_jsonl(path, what="items to evaluate")
        check_rows(rows, path, {"id": (str, int), "question": str, "answer": (str, int, float)}, unique="id",
                   fix="is --world a directory written by `critiquelab world`?")
    elif name in BENCHMARKS:
        _check_type_fits(name, BENCHMARKS[name].answer_type, answer_type)
        rows = _builtin(name, bench_dir, choice_permutations, choice_prompt)
        if limit is not None and BENCHMARKS[name].answer_type == "choice":
            return rows[:limit * choice_permutations]
    elif name.endswith(".jsonl"):  # your own problems file, e.g. a validation set for checkpoint selection
        if not Path(name).is_file():
            raise UserError(f"{name}: benchmark file not found (a problems JSONL with id, question and answer)")
        rows = load_problems(name, need_answers="a benchmark needs reference answers to grade")
        if answer_type not in (None, "math"):
            rows = _typed(rows, name, answer_type)
    elif name.startswith("hf:"):
        rows = _hub_benchmark(name, hf_fields or {}, answer_type or "math", limit)
    else:
        valid = ", ".join([*WORLD_BENCHMARKS, *BENCHMARKS])
        raise UserError(f"unknown benchmark {name!r} (valid: {valid}, a problems .jsonl file or hf:DATASET[:split])")
    return rows[:limit] if limit is not None else rows


HF_FIELDS = ("id", "question", "answer", "choices")  # eval.hf_fields: ours -> the dataset's column


def _hub_records(dataset: str, split: str) -> list[dict]:
    import datasets

    try:
        return datasets.load_dataset(dataset, split=split).to_list()
    except Exception as e:  # offline, unknown name or split, unreadable files, ...
        import huggingface_hub.constants

        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or huggingface_hub.constants.HF_HUB_OFFLINE
        if offline and not Path(dataset).exists():
            raise UserError(f"hf:{dataset}: not loadable offline (HF_HUB_OFFLINE=1): download it first "
                            f"(`hf download --repo-type dataset {dataset}`) or give a local directory") from None
        raise UserError(f"hf:{dataset}:{split}: cannot load the dataset ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:160]})") from None


def _hub_benchmark(name: str, fields: dict, answer_type: str, limit: int | None) -> list[dict]:
    """`hf:DATASET[:split]` (default split: test), read with `datasets`, its columns mapped by
    `eval.hf_fields` and graded as `eval.answer_type`; a `choices` column (a list of options) is
    rendered as `(A) ...` lines with the boxed-letter line, and an integer answer is its index."""
    dataset, _, split = name[3:].partition(":")
    if unknown := sorted(set(fields) - set(HF_FIELDS)):
        raise UserError(f"eval.hf_fields: unknown {unknown} (valid: {', '.join(HF_FIELDS)})")
    cols = {"question": "question", "answer": "answer", **fields}
    records = _hub_records(dataset, split or "test")[:limit]
    if not records:
        raise UserError(f"{name}: no rows")
    where = f"{name} (row"
    types = {"question": str, "answer": (str, int, float), "id": (str, int), "choices": list}
    for i, r in enumerate(records):
        missing = [c for k, c in cols.items() if r.get(c) is None]
        if missing:
            raise UserError(f"{where} {i}): missing column {missing[0]!r} (columns: {', '.join(sorted(r))}); map "
                            "yours with eval.hf_fields.<question|answer|id|choices>=COLUMN")
        bad = [k for k, c in cols.items() if not _type_fits(r[c], types[k])]
        if bad:
            raise UserError(f"{where} {i}): column {cols[bad[0]]!r} holds {json.dumps(r[cols[bad[0]]])[:40]}, not "
                            f"a valid {bad[0]}")
    return [_hub_row(r, i, name, cols, answer_type) for i, r in enumerate(records)]


def _type_fits(value, types) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    return isinstance(value, types) and not isinstance(value, bool)


def _hub_row(r: dict, i: int, name: str, cols: dict, answer_type: str) -> dict:
    answer, question, letters = r[cols["answer"]], r[cols["question"]], LETTERS
    if "choices" in cols:
        letters = LETTERS[:len(r[cols["choices"]])]
        if answer_type == "choice" and isinstance(answer, int) and 0 <= answer < len(letters):
            answer = letters[answer]
        question += "\n\n" + "\n".join(f"({a}) {o}" for a, o in zip(letters, r[cols["choices"]], strict=False))
        question += f"\n\n{BOXED_LETTER}"
    answer = _number(answer)
    if problem := answer_problem(answer_type, answer, letters):
        raise UserError(f"{name} (row {i}): {problem}, which eval.answer_type={answer_type} needs; set "
                        "eval.answer_type to the type of these answers (math, choice, bbeh)")
    row = {"id": f"{name}-{r[cols['id']] if 'id' in cols else i}", "question": question, "answer": answer}
    if answer_type == "math":
        return row
    options = {"options": [str(o) for o in r[cols["choices"]]]} if "choices" in cols else {}
    return {**row, "answer_type": answer_type, "letters": letters, **options}


def _check_type_fits(name: str, own: str, asked: str | None) -> None:
    if asked is not None and asked != own:
        raise UserError(f"eval.answer_type={asked} does not fit benchmark {name!r} (its answers are {own}); "
                        "eval.answer_type is for problems files and hf: benchmarks: leave it unset for built-in ones")


def choice_letter(reference) -> str | None:
    """The option letter a reference names (`C`, `(C)`, `c`), or None."""
    m = re.fullmatch(r"\s*\(?([A-Za-z])\)?\s*", str(reference))
    return m[1].upper() if m else None


def answer_problem(answer_type: str, reference, letters: str = LETTERS) -> str | None:
    """Why a reference answer cannot be graded as `answer_type` (None when it can)."""
    if answer_type == "choice" and (choice_letter(reference) or "?") not in letters:
        return f"answer {str(reference)[:40]!r} is not an option letter ({letters[0]}-{letters[-1]})"
    if answer_type == "bbeh" and not str(reference).strip():
        return "answer is empty"
    return None


def _typed(rows: list, path: str, answer_type: str) -> list[dict]:
    """A problems file's rows as `answer_type`, each reference checked to fit it (file:line)."""
    lines = getattr(rows, "lines", None) or list(range(1, len(rows) + 1))
    out = []
    for r, line in zip(rows, lines, strict=True):
        if problem := answer_problem(answer_type, r["answer"]):
            raise UserError(f"{path}:{line}: {problem}, which eval.answer_type={answer_type} needs; set "
                            "eval.answer_type to the type of these answers (math, choice, bbeh)")
        out.append({**r, "answer_type": answer_type})
    return out


def benchmark_questions(bench_dir: str | Path | None = None) -> Iterator[tuple[str, str]]:
    """(benchmark, question) of every test set here, the critic benchmark included: what
    decontamination keeps out of training data. A file that is not present is passed over."""
    for name, b in BENCHMARKS.items():
        try:
            if b.answer_type == "math":
                yield from ((name, r["question"]) for r in load_benchmark(name, bench_dir=bench_dir))
            else:
                path = benchmarks_dir(bench_dir) / b.folder / b.file
                yield from ((name, b.convert(r, i)["question"]) for i, (_, r) in enumerate(_raw_rows(path)))
        except (UserError, KeyError, TypeError, ValueError):
            continue
    for path in sorted((benchmarks_dir(bench_dir) / PRMBENCH).glob("*.jsonl")):
        try:
            for r in read_jsonl(path):
                yield from ((PRMBENCH, r[k]) for k in ("original_question", "modified_question")
                            if isinstance(r.get(k), str))
        except UserError:
            continue


def benchmark_file_name(name: str) -> str:
    """Where a benchmark's items go in an eval directory: its name, a problems file's stem, or
    `hf-<dataset>_<split>` for a hub benchmark."""
    if name.startswith("hf:"):
        return "hf-" + re.sub(r"[^\w.-]+", "_", name[3:]).strip("_") + ".jsonl"
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
