"""`critiquelab view`: one self-contained HTML page to read what the stages wrote, sample by sample.

    critiquelab view solutions.jsonl critique/critiques.jsonl --out page.html
    critiquelab view runs/demo --out runs/demo/view.html        # a whole run: a tab per critic and method

Inputs (each PATH a file or an output directory; several are joined by solution / problem id):
- solutions (`sample`) and problems files (a world split): what the others are joined with;
- critique stores (`critiques.jsonl`, one or several teachers, a panel), refine stores (`refined.jsonl`,
  shown with the critique each was refined from), built datasets (`dataset/<method>.jsonl`);
- judge / eval-critic output (`judgements.jsonl`; PRMBench's items are read from the benchmark files its
  critic.json names), eval per-item files (`eval/<cell>/<benchmark>.jsonl`);
- an experiment's run directory: every critic, every method's evaluation, every critique and refine store.

The page (template `templates/view.html`) holds its data as gzip-compressed JSON in base64 (no `</script>`
can occur in it), decompressed by the browser's DecompressionStream: the cards' structure (ids, labels,
verdicts, who wrote what: all the filters need) in one block, read on opening, and the texts (questions,
solutions, critiques, refinements) in blocks of about 64 KB, in the order of the cards, each read when a
card on screen needs it (all of them before the first search). So a page of 50K critiqued solutions
opens in about the time its file takes to read. Model text is only ever set as text, never parsed as
HTML. It needs no server and loads nothing: a Content-Security-Policy allows only its own script (by
hash) and no connection.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import json
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from critiquelab.critic import named_step
from critiquelab.critique import parse_verdict
from critiquelab.io import UserError, atomic_write, check_output_file, read_json, read_jsonl, read_marker

__all__ = ["GENERATOR", "Page", "collect", "decode", "pack", "unpack", "split_steps", "render", "write_view",
           "summary_line"]

GENERATOR = '<meta name="generator" content="critiquelab view">'  # what marks a page as ours
KINDS = "a run directory, solutions, a critique or refine store, a built dataset, judgements, eval items"

# ---------------------------------------------------------------------------------------------
# Solutions as numbered steps

_STEP = re.compile(r"^[ \t]*(?:\*\*)?Step[ \t]+(\d+)[ \t]*(?:\*\*)?[ \t]*[:.)][ \t]*(?:\*\*)?[ \t]*", re.IGNORECASE | re.M)
_ANSWER_LINE = re.compile(r"^\s*((the |so the |my )?(final )?answer\b|\\boxed|####|conclusion\b)", re.IGNORECASE)


def split_steps(text: str | None) -> dict:
    """`{pre, steps: [[number, text], ...], post}`: the steps a solution's `Step i:` lines start
    (the prefix dropped), else its paragraphs (or lines), numbered from 1; `post` is a closing answer
    line ("The answer is ..."), `pre` what comes before the first step."""
    text = text or ""
    marks = list(_STEP.finditer(text))
    if marks:
        pre = text[:marks[0].start()].strip("\n")
        steps = [[int(m[1]), text[m.end():nxt.start() if nxt else len(text)].strip("\n")]
                 for m, nxt in zip(marks, [*marks[1:], None], strict=True)]
    else:
        pre = ""
        parts = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
        if len(parts) < 2:
            parts = [p for p in text.split("\n") if p.strip()]
        steps = [[i, p.strip("\n")] for i, p in enumerate(parts, 1)]
    post = ""
    if steps:
        lines = steps[-1][1].split("\n")
        cut = next((i for i in range(1 if marks else 0, len(lines)) if _ANSWER_LINE.match(lines[i])), None)
        if cut is not None and (cut > 0 or len(steps) > 1):
            steps[-1][1], post = "\n".join(lines[:cut]).rstrip("\n"), "\n".join(lines[cut:])
            if not steps[-1][1].strip() and not marks:
                steps.pop()
    return {"pre": pre, "steps": steps, "post": post}


# ---------------------------------------------------------------------------------------------
# The page's data: problems, solutions and tabs of rows (each row one card)


@dataclass
class Page:
    """Problems and solutions once each (several tabs may show one solution), and the tabs' rows.

    A row: `s` (solution index), `c` critique, `v` verdict, `n` the step the critique blames, `w` who
    wrote it (teacher, critic or method), `m` model, `seed`, `p` parse state (or eval's grading reason),
    `r` / `rl` a refined solution and its grade, `x` a note."""
    title: str = "critiquelab view"
    problems: list[dict] = field(default_factory=list)
    solutions: list[dict] = field(default_factory=list)
    tabs: list[dict] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    _pidx: dict = field(default_factory=dict)
    _sidx: dict = field(default_factory=dict)
    by_id: dict = field(default_factory=dict)   # solution id -> solution index (the latest given)
    questions: dict = field(default_factory=dict)  # problem id -> problem row (question, answer, world fields)

    def problem(self, pid, question: str | None, answer=None) -> int:
        key = (str(pid), question)
        if key not in self._pidx:
            self._pidx[key] = len(self.problems)
            self.problems.append({"id": str(pid), "q": question, "a": None if answer is None else str(answer)})
        return self._pidx[key]

    def solution(self, sid, pid, question, answer, text: str | None, *, label=None, first_error=None, kind=None,
                 generator=None) -> int:
        key = (str(sid), str(pid), question, text)
        if key not in self._sidx:
            self._sidx[key] = len(self.solutions)
            self.solutions.append({"id": str(sid), "p": self.problem(pid, question, answer), **split_steps(text),
                                   "l": label if isinstance(label, bool) else None, "fe": first_error, "k": kind,
                                   "g": generator})
        return self._sidx[key]

    def add_solutions(self, rows: list[dict]) -> None:
        for r in rows:
            self.by_id[str(r["id"])] = self.solution(
                r["id"], r.get("problem_id", r["id"]), r.get("question"), r.get("answer"), r.get("solution"),
                label=r.get("correct"), first_error=r.get("first_error_step"), kind=r.get("error_kind"),
                generator=r.get("generator") or r.get("source"))

    def tab(self, tab_id: str, title: str, kind: str, who: str = "teacher") -> dict:
        for t in self.tabs:
            if t["id"] == tab_id:
                return t
        t = {"id": tab_id, "title": title, "kind": kind, "who": who, "rows": []}
        self.tabs.append(t)
        return t

    def data(self) -> dict:
        return {"title": self.title, "inputs": self.inputs, "made": time.strftime("%Y-%m-%d %H:%M"),
                "version": _version(), "P": self.problems, "S": self.solutions,
                "T": [t for t in self.tabs if t["rows"]]}


def _version() -> str | None:
    from critiquelab.io import _version as v

    return v("critiquelab")


def _critique_row(s: int | None, text: str | None, verdict=None, named=None, **extra) -> dict:
    """A card's critique fields; the verdict parsed when not given, the blamed step (when the teacher
    did not record it, as the checker does) read from the text as eval-critic reads it."""
    if text is not None and verdict is None and extra.get("p") != "failed":
        verdict = parse_verdict(text)
    named = named if named is not None else named_step(text) if text else None
    p = extra.pop("p", None) or ("parsed" if verdict else "no verdict" if text is not None else "failed")
    return {"s": s, "c": text, "v": verdict, "n": named, "p": p, **{k: v for k, v in extra.items() if v is not None}}


def _latest(rows: list[dict]) -> list[dict]:
    """A store's latest row per key (later rows replace earlier ones)."""
    out: dict = {}
    for i, r in enumerate(rows):
        out[r.get("key", i)] = r
    return list(out.values())


def _join(page: Page, sid) -> int:
    """The solution a row is of; one not among the given ones gets a card saying so (its critique is shown)."""
    s = page.by_id.get(str(sid))
    return s if s is not None else page.solution(sid, sid, None, None, None)


def _check_joined(page: Page, path: Path, rows: list[dict], what: str) -> None:
    if rows and not any(str(r.get("id")) in page.by_id for r in rows):
        raise UserError(f"{path}: none of its {len(rows)} {what} is of a solution given; add the solutions file "
                        f"they were written from (critiquelab view SOLUTIONS {path} --out PAGE)")


# ---------------------------------------------------------------------------------------------
# One loader per input kind


def load_critiques(page: Page, path: Path, tab: dict) -> None:
    rows = _latest(read_jsonl(path, tolerate_torn_tail=True))
    _check_joined(page, path, rows, "critiques")
    for r in rows:
        failed = r.get("status") == "failed"
        tab["rows"].append(_critique_row(
            _join(page, r.get("id")), None if failed else r.get("critique"), r.get("verdict"), r.get("error_step"),
            p="failed" if failed else None, w=r.get("teacher_name") or r.get("teacher"), m=r.get("teacher"),
            x=(r.get("error") or "")[:300] if failed else None))


def load_refined(page: Page, path: Path, critiques: Path | None, tab: dict) -> None:
    """A refine store's rows with the solution and the (latest ok) critique each was refined from."""
    from critiquelab.grading import grade

    crit = {}
    if critiques is not None and critiques.is_file():
        crit = {str(r["id"]): r for r in _latest(read_jsonl(critiques, tolerate_torn_tail=True))
                if r.get("status") == "ok"}
    rows = _latest(read_jsonl(path, tolerate_torn_tail=True))
    _check_joined(page, path, rows, "refinements")
    for r in rows:
        s = _join(page, r.get("id"))
        c = crit.get(str(r.get("id")), {})
        ref = page.problems[page.solutions[s]["p"]]["a"]
        refined = r.get("solution") if r.get("status") == "ok" else None
        tab["rows"].append(_critique_row(
            s, c.get("critique"), c.get("verdict"), w=r.get("teacher_name") or r.get("teacher"), m=r.get("teacher"),
            r=refined, rl=grade(refined, ref).correct if refined is not None and ref is not None else None,
            x=None if refined is not None else f"refinement failed: {(r.get('error') or '')[:300]}"))


def load_judgements(page: Page, path: Path, tab: dict, who: str | None, model: str | None = None,
                    seed=None) -> None:
    rows = _latest(read_jsonl(path, tolerate_torn_tail=True))
    _check_joined(page, path, rows, "judgements")
    for r in rows:
        tab["rows"].append(_critique_row(_join(page, r.get("id")), r.get("critique") or "", r.get("verdict"),
                                         w=who, m=model, seed=seed))


def load_eval(page: Page, path: Path, tab: dict, who: str | None, seed=None) -> None:
    """A model's graded responses: each a solution of its problem (the world's checker names its
    first wrong step and error kind where the problem is the world's)."""
    from critiquelab.world import check

    rows = _latest(read_jsonl(path, tolerate_torn_tail=True))
    for r in rows:
        prob = page.questions.get(str(r.get("id")), {})
        first, kind = None, None
        if r.get("correct") is False and "steps" in prob and "start" in prob and r.get("response"):
            res = check(prob, r["response"])
            first, kind = res.error_step, res.error_kind
        s = page.solution(f"{who}:{r.get('id')}" if who else r.get("id"), r.get("id"), prob.get("question"),
                          r.get("reference", prob.get("answer")), r.get("response"), label=r.get("correct"),
                          first_error=first, kind=kind, generator=who)
        tab["rows"].append({"s": s, "w": who, "seed": seed, "p": r.get("reason"),
                            "x": f"extracted answer: {r.get('extracted')}"})


_CFT = re.compile(r"\A(?P<instruction>.*?)\n\nQuestion:\n(?P<q>.*?)\n\nSolution:\n(?P<s>.*)\Z", re.S)
_CGD = re.compile(r"\AQuestion:\n(?P<q>.*?)\n\nYour answer:\n(?P<s>.*?)\n\nCritique of your answer:\n(?P<c>.*)"
                  r"\n\n[^\n]*\Z", re.S)


def load_dataset(page: Page, path: Path, tab: dict, labelled: dict | None = None) -> None:
    """A built training set: CFT rows as solution + critique, CGD rows as solution + critique +
    refined solution, SFT rows as question + answer; labels from the solutions it was built from
    (`labelled`: (question, solution) -> solution row), when at hand."""
    labelled = labelled or {}
    for i, r in enumerate(read_jsonl(path), 1):
        if not isinstance(r.get("prompt"), list) or not isinstance(r.get("completion"), list):
            raise UserError(f"{path}:{i}: expected a built dataset row ('prompt' and 'completion' message lists)")
        users = [m.get("content", "") for m in r["prompt"] if isinstance(m, dict) and m.get("role") == "user"]
        user = users[-1] if users else ""
        answer = "".join(m.get("content", "") for m in r["completion"] if isinstance(m, dict))
        flag = r.get("flag")
        if m := _CGD.match(user):
            q, sol, crit, refined = m["q"], m["s"], m["c"], answer
        elif m := _CFT.match(user):
            q, sol, crit, refined = m["q"], m["s"], answer, None
        else:
            q, sol, crit, refined = user, answer, None, None
        known = labelled.get((q, sol), {})
        s = page.solution(known.get("id", f"{path.stem}-{i}"), known.get("problem_id", f"{path.stem}-{i}"), q,
                          known.get("answer"), sol, label=known.get("correct"),
                          first_error=known.get("first_error_step"), kind=known.get("error_kind"),
                          generator=known.get("generator") or known.get("source"))
        if crit is None and refined is None:
            tab["rows"].append({"s": s, "x": flag})
        else:
            tab["rows"].append(_critique_row(s, crit, r=refined, x=flag))


def load_prmbench(page: Page, out: Path, record: dict, tab: dict, bench_dir: str | None, who: str | None,
                  seed=None) -> None:
    """An eval-critic --benchmark prmbench output: its judgements joined with PRMBench's items (read
    from the benchmark files, which the output does not copy)."""
    from critiquelab import prmbench

    folder = Path(bench_dir) if bench_dir else Path(record.get("benchmark_dir") or "").parent
    if not (folder / "prmbench").is_dir():
        raise UserError(f"{out}: the PRMBench files it was judged on are not at {folder / 'prmbench'}; give "
                        "--benchmarks-dir DIR (the folder holding prmbench/)")
    items, _ = prmbench.load_prmbench(folder, (record.get("config") or {}).get("benchmark_limit"))
    for it in items:
        page.by_id[it["id"]] = page.solution(
            it["id"], it["problem_id"], it["question"], None, it["solution"], label=it["correct"],
            first_error=it.get("first_error_step"), kind=it["error_kind"], generator="PRMBench")
    load_judgements(page, out / "judgements.jsonl", tab, who, record.get("critic"), seed)


def load_critic_dir(page: Page, d: Path, tab: dict, bench_dir: str | None, who: str | None = None, seed=None,
                    fallback: Path | None = None) -> None:
    """A judge or eval-critic output directory (judgements.jsonl, and critic.json naming what was judged)."""
    record = read_json(d / "critic.json") if (d / "critic.json").is_file() else {}
    who = who or Path(str(record.get("critic") or d.name)).name
    if record.get("benchmark") == "prmbench":
        return load_prmbench(page, d, record, tab, bench_dir, who, seed)
    judged = Path(record["solutions"]) if record.get("solutions") else None
    for sols in (judged, fallback):
        if sols is not None and sols.is_file():
            page.add_solutions(read_jsonl(sols))
            break
    load_judgements(page, d / "judgements.jsonl", tab, who, record.get("critic"), seed)


def _critic_title(d: Path) -> str:
    record = read_json(d / "critic.json") if (d / "critic.json").is_file() else {}
    name = Path(str(record.get("critic") or d.name)).name
    return f"critic: {name}" + (" on PRMBench" if record.get("benchmark") == "prmbench" else "")


def load_run(page: Page, run: Path, bench_dir: str | None) -> None:
    """An experiment's run directory: a tab per critic (critic/<cell>/), per method's evaluation
    (eval/<cell>/<benchmark>.jsonl) and per source's critique store(s) and refine store."""
    cells = read_json(run / "cells.json") if (run / "cells.json").is_file() else []
    cells = [c for c in cells if isinstance(c, dict) and "name" in c]
    names = [c["name"] for c in cells] or sorted(p.name for p in (run / "eval").glob("*") if p.is_dir())
    seeds = {c["name"]: c.get("seed") for c in cells}
    for split in ("test", "validation", "train"):
        if (run / "world" / f"{split}.jsonl").is_file():
            page.questions.update({str(r["id"]): r for r in read_jsonl(run / "world" / f"{split}.jsonl")})
    models = {c.get("model") for c in cells}
    for name in names:
        d = run / "critic" / name
        if (d / "judgements.jsonl").is_file():
            cell = next((c for c in cells if c["name"] == name), {})
            many = len(models) > 1 and cell.get("model")
            fallback = run / "critic" / (f"solutions-{cell['model']}.jsonl" if many else "solutions.jsonl")
            load_critic_dir(page, d, page.tab(f"critic/{name}", f"critic: {name}", "critic", "critic"), bench_dir,
                            name, seeds.get(name), fallback)
    for name in names:
        for f in sorted((run / "eval" / name).glob("*.jsonl")):
            load_eval(page, f, page.tab(f"eval/{name}/{f.stem}", f"method: {name} ({f.stem})", "eval", "method"),
                      name, seeds.get(name))
    for store in sorted(run.glob("data/**/critique/critiques.jsonl")):
        source = store.parents[2]
        rel = source.relative_to(run / "data").as_posix()
        if (source / "solutions.jsonl").is_file():
            page.add_solutions(read_jsonl(source / "solutions.jsonl"))
        load_critiques(page, store, page.tab(f"critiques/{rel}", f"critiques: {rel}", "critiques"))
    for store in sorted(run.glob("data/**/refine/refined.jsonl")):
        rel = store.parents[1].relative_to(run / "data").as_posix()
        load_refined(page, store, store.parents[1] / "critique" / "critiques.jsonl",
                     page.tab(f"refine/{rel}", f"refined: {rel}", "refine"))


# ---------------------------------------------------------------------------------------------
# Telling the inputs apart


def _file_kind(path: Path) -> str:
    rows = read_jsonl(path, tolerate_torn_tail=True)
    if not rows:
        raise UserError(f"{path}: no rows (the file is empty)")
    r = rows[0]
    if "prompt" in r and "completion" in r:
        return "dataset"
    if "critique" in r and ("teacher" in r or "status" in r):
        return "critiques"
    if "teacher" in r and "status" in r and "solution" in r:
        return "refined"
    if "classification" in r and "named_step" in r:
        return "prmbench"
    if "critique" in r and "verdict" in r:
        return "judgements"
    if "response" in r and "reference" in r:
        return "eval"
    if "question" in r and "solution" in r and ("problem_id" in r or "key" in r):
        return "solutions"
    if "question" in r and "id" in r:
        return "problems"
    raise UserError(f"{path}:1: not a file critiquelab writes that view reads ({KINDS}; see docs/formats.md)")


_DIR_FILES = {"critique": "critiques.jsonl", "refine": "refined.jsonl", "judge": "judgements.jsonl"}


def _inputs(paths: list[Path]) -> list[tuple[str, Path]]:
    """(kind, path) of every input: a directory by its marker, a file by its rows."""
    out = []
    for p in paths:
        if not p.exists():
            raise UserError(f"{p}: not found")
        if p.is_file():
            kind = _file_kind(p)
            out.append(("critic-dir", p.parent) if kind == "prmbench" else (kind, p))
            continue
        marker = read_marker(p) or {}
        kind = marker.get("kind")
        if kind == "experiment" or (p / "cells.json").is_file():
            out.append(("run", p))
        elif kind in _DIR_FILES and (p / _DIR_FILES[kind]).is_file():
            out.append(({"critique": "critiques", "refine": "refined", "judge": "critic-dir"}[kind],
                        p if kind == "judge" else p / _DIR_FILES[kind]))
        elif kind == "critic-eval" or (p / "judgements.jsonl").is_file():
            out.append(("critic-dir", p))
        elif kind in ("dataset", "eval", "world") or list(p.glob("*.jsonl")):
            files = sorted(f for f in p.glob("*.jsonl"))
            out += [(_file_kind(f), f) for f in files]
        else:
            raise UserError(f"{p}: a directory view cannot read (expected {KINDS})")
    return out


def collect(paths: list[str | Path], bench_dir: str | None = None) -> Page:
    """The page's data from every input: solutions and problems first, then what is joined with them."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("view needs at least one PATH")
    page = Page(title="critiquelab view: " + ", ".join(p.name or str(p) for p in paths),
                inputs=[str(p) for p in paths])
    inputs = _inputs(paths)
    labelled: dict = {}
    for kind, p in inputs:
        if kind == "solutions":
            rows = read_jsonl(p)
            page.add_solutions(rows)
            labelled.update({(r.get("question"), r.get("solution")): r for r in rows})
        elif kind == "problems":
            page.questions.update({str(r["id"]): r for r in read_jsonl(p)})
    stores = [p for kind, p in inputs if kind == "critiques"]
    for kind, p in inputs:
        if kind == "run":
            load_run(page, p, bench_dir)
        elif kind == "critiques":
            load_critiques(page, p, page.tab("critiques", "critiques", "critiques"))
        elif kind == "refined":
            beside = p.parent.parent / "critique" / "critiques.jsonl"
            load_refined(page, p, stores[0] if stores else beside, page.tab(f"refine/{p}", f"refined: {p}", "refine"))
        elif kind == "critic-dir":
            load_critic_dir(page, p, page.tab(f"critic/{p}", _critic_title(p), "critic", "critic"), bench_dir)
        elif kind == "judgements":
            load_judgements(page, p, page.tab(f"critic/{p}", f"judgements: {p}", "critic", "critic"), p.parent.name)
        elif kind == "eval":
            load_eval(page, p, page.tab(f"eval/{p}", f"eval: {p.parent.name}/{p.stem}", "eval", "method"),
                      p.parent.name)
        elif kind == "dataset":
            manifest = p.parent / "manifest.json"
            if not labelled and manifest.is_file():  # label the rows from the solutions they were built from
                sols = next((Path(x) for x in read_json(manifest).get("inputs") or [] if str(x).endswith(
                    "solutions.jsonl") and Path(x).is_file()), None)
                if sols is not None:
                    labelled = {(r.get("question"), r.get("solution")): r for r in read_jsonl(sols)}
            load_dataset(page, p, page.tab(f"dataset/{p}", f"dataset: {p.stem}", "dataset"), labelled)
    if not any(t["rows"] for t in page.tabs):
        if page.solutions:  # solutions alone: their cards without critiques
            tab = page.tab("solutions", "solutions", "solutions")
            tab["rows"] = [{"s": s} for s in sorted(set(page.by_id.values()))]
        else:
            raise UserError(f"{', '.join(map(str, paths))}: nothing to show (expected {KINDS})")
    return page


# ---------------------------------------------------------------------------------------------
# The HTML file


def _template() -> str:
    return resources.files("critiquelab").joinpath("templates/view.html").read_text(encoding="utf-8")


CHUNK_CHARS = 64 * 1024  # the texts' blocks: each read whole when a card needs one of its texts


def pack(data: dict, chunk_chars: int = CHUNK_CHARS) -> tuple[dict, list[list[str]]]:
    """`data` with each text (a question, a solution's steps, a critique, a refined solution) replaced
    by its number, and the texts in blocks of about `chunk_chars` characters, numbered in the order
    the cards show them (tab by tab, row by row), so a page of cards needs a block or two; the
    structure gets `X`, the number of each block's first text."""
    texts: list[str] = []
    starts: list[int] = [0]
    size = 0

    def ref(text):
        nonlocal size
        if text is None:
            return None
        texts.append(text)
        size += len(text)
        if size >= chunk_chars:
            starts.append(len(texts))
            size = 0
        return len(texts) - 1

    problems: list = [None] * len(data["P"])
    solutions: list = [None] * len(data["S"])

    def problem(i):
        if problems[i] is None:
            problems[i] = {**data["P"][i], "q": ref(data["P"][i]["q"])}

    def solution(i):
        if solutions[i] is None:
            s = data["S"][i]
            problem(s["p"])
            solutions[i] = {**s, "pre": ref(s["pre"] or None), "steps": [[n, ref(t)] for n, t in s["steps"]],
                            "post": ref(s["post"] or None)}

    tabs = []
    for t in data["T"]:
        rows = []
        for r in t["rows"]:
            solution(r["s"])
            row = {**r, "c": ref(r.get("c"))} if "c" in r else dict(r)
            if "r" in r:
                row["r"] = ref(r["r"])
            rows.append(row)
        tabs.append({**t, "rows": rows})
    for i in range(len(solutions)):
        solution(i)
    for i in range(len(problems)):
        problem(i)
    if starts[-1] == len(texts) and len(starts) > 1:
        starts.pop()
    chunks = [texts[a:b] for a, b in zip(starts, [*starts[1:], len(texts)], strict=True)]
    return {**data, "P": problems, "S": solutions, "T": tabs, "X": starts[:len(chunks)]}, chunks


def unpack(structure: dict, chunks: list[list[str]]) -> dict:
    """`pack`'s inverse: the data with its texts back in place."""
    texts = [t for chunk in chunks for t in chunk]

    def text(i, empty=None):
        return empty if i is None else texts[i]

    out = {k: v for k, v in structure.items() if k != "X"}
    out["P"] = [{**p, "q": text(p["q"])} for p in structure["P"]]
    out["S"] = [{**s, "pre": text(s["pre"], ""), "steps": [[n, text(i)] for n, i in s["steps"]],
                 "post": text(s["post"], "")} for s in structure["S"]]
    out["T"] = []
    for t in structure["T"]:
        rows = []
        for r in t["rows"]:
            row = dict(r)
            for k in ("c", "r"):
                if k in r:
                    row[k] = text(r[k])
            rows.append(row)
        out["T"].append({**t, "rows": rows})
    return out


def _blob(obj) -> str:
    """gzip (deterministic: mtime 0) + base64 of the JSON of `obj`: no `<` or `&` can occur in it."""
    return base64.b64encode(gzip.compress(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(),
                                          6, mtime=0)).decode()


_BLOCK = re.compile(r'<script (?:id="payload"|class="t") type="application/octet-stream">([A-Za-z0-9+/=]*)</script>')


def decode(text: str) -> dict:
    """The data a page holds (what `Page.data()` gave), read back from its HTML."""
    blocks = [json.loads(gzip.decompress(base64.b64decode(b))) for b in _BLOCK.findall(text)]
    return unpack(blocks[0], blocks[1:])


def render(page: Page, chunk_chars: int = CHUNK_CHARS) -> str:
    """The page: the template with the cards' structure and the texts' blocks as gzip + base64, and a
    CSP that runs only the template's own script (its sha256)."""
    tpl = _template()
    script = re.search(r"<script>(.*?)</script>", tpl, re.S)[1]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    structure, chunks = pack(page.data(), chunk_chars)
    fills = {"__TITLE__": html.escape(page.title), "__SCRIPT_HASH__": f"'sha256-{digest}'",
             "__DATA__": _blob(structure),
             "__TEXTS__": "\n".join(f'<script class="t" type="application/octet-stream">{_blob(c)}</script>'
                                    for c in chunks)}
    return re.sub("|".join(fills), lambda m: fills[m[0]], tpl)


def ours(path: Path) -> bool:
    """A page this command wrote (its generator line near the top)."""
    try:
        with open(path, "rb") as f:
            return GENERATOR.encode() in f.read(2048)
    except OSError:
        return False


def write_view(paths: list[str | Path], out: str | Path, bench_dir: str | None = None) -> dict:
    """Check `out` (never a file critiquelab did not write), collect the inputs, write the page atomically."""
    out = check_output_file(out)
    if out.exists() and not ours(out):
        raise UserError(f"--out {out}: exists and was not written by critiquelab view; refusing to replace it "
                        "(choose another path or move it away)")
    page = collect(paths, bench_dir)
    text = render(page)
    with atomic_write(out) as f:
        f.write(text)
    return {"tabs": [(t["title"], len(t["rows"])) for t in page.tabs if t["rows"]],
            "cards": sum(len(t["rows"]) for t in page.tabs), "bytes": len(text.encode())}


def summary_line(res: dict, out: str | Path) -> str:
    tabs = ", ".join(f"{title} {n}" for title, n in res["tabs"][:6]) + (", ..." if len(res["tabs"]) > 6 else "")
    return (f"view: {out} ({res['cards']} cards in {len(res['tabs'])} tab(s): {tabs}; "
            f"{res['bytes'] / 1e6:.1f} MB, opens from disk)")
