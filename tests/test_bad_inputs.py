"""The bad-input sweep: every subcommand, fed every kind of bad input, answers with ONE line
`critiquelab <cmd>: error: ...` that names the file:line, the config key or the value, exits 2,
prints no traceback and leaves nothing behind (no output path, no touched file).

Each case runs in-process through `critiquelab.cli.main` in its own tmp directory, whose tree
(paths, sizes, mtimes) is compared before and after, as is the tree of the shared fixtures; a few
cases also run through `python -m critiquelab.cli` to prove the real exit path. Everything is
offline: HF_HUB_OFFLINE=1, benchmarks and the model cache point at empty tmp directories, and the
unreachable OpenAI endpoints are free loopback ports.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from critiquelab.cli import main

NOT_UTF8 = b'{"question": "caf\xe9"}\n'  # latin-1 bytes: not UTF-8
HUB = "critiquelab-test/no-such-model"  # a hub name that is never cached


def jl(*rows: Any) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def row(base: dict, **changes: Any) -> dict:
    """`base` with fields changed; a value of DROP removes the field."""
    out = {**base, **changes}
    return {k: v for k, v in out.items() if v is not DROP}


DROP = object()


def copy_model(ctx: dict, *, chat_template: bool) -> None:
    """The micro real model copied to {t}/m, its chat template removed when asked."""
    dest = Path(ctx["t"]) / "m"
    shutil.copytree(ctx["TM"], dest)
    if not chat_template:
        for name in ("tokenizer_config.json", "chat_template.jinja"):
            f = dest / name
            if name.endswith(".json") and f.exists():
                cfg = json.loads(f.read_text())
                cfg.pop("chat_template", None)
                f.write_text(json.dumps(cfg))
            elif f.exists():
                f.unlink()
PROBLEM = {"id": "q1", "question": "What is 2 + 3?", "answer": "5"}
SOL = {"id": "q1-s0", "problem_id": "q1", "question": "What is 2 + 3?", "answer": "5",
       "solution": "Step 1: 2 + 3 = 5\nThe answer is \\boxed{5}.", "correct": True}
STORE = {"key": "k1", "id": "q1-s0", "input": "0123456789abcdef", "status": "ok", "teacher": "checker",
         "critique": "Step 1: 2 + 3 = 5 is correct.\nConclusion: right [END]", "verdict": "right"}
EXAMPLE = {"prompt": [{"role": "user", "content": "What is 2 + 3?"}],
           "completion": [{"role": "assistant", "content": "The answer is \\boxed{5}."}]}
WORLD_ROW = {"id": "w1", "question": "Mia has 2 apples. Then Mia buys 3 more. How many?", "answer": "5"}
PRETRAIN_ROW = {"id": "w1", "question": "Mia has 2 apples. Then Mia buys 3 more. How many?", "answer": "5",
                "solution": "Step 1: 2 + 3 = 5\nThe answer is \\boxed{5}.", "start": 2,
                "steps": [["+", 3, "buys 3 more"]]}
RESPONSE = {"response": "The answer is \\boxed{5}.", "reference": "5"}
RESULTS = {"benchmarks": {"world": {"accuracy": 0.5, "n": 2, "ci95": [0.1, 0.9], "no_answer": 0}}}
ITEMS = jl({"id": "w1", "correct": True}, {"id": "w2", "correct": False})
CELL = {"name": "cft-s0", "method": "cft", "seed": 0, "source": None, "teacher": None, "data_size": None,
        "status": "ok"}

# A valid command per subcommand; each case changes one thing. Placeholders: {t} the case's tmp
# directory, {W} a world, {S} solutions, {K} their critique store, {D} a dataset, {M} a fake model
# directory (a valid config.json, no weights: every case fails before a model is loaded), {BM} one
# with a broken config.json, {R} a run directory with results, {E} a valid experiment config,
# {G} a valid responses file, {port} a loopback port nothing listens on, {TM} a real micro model
# (only for the few cases that are found once a model is loaded).
BASE = {
    "world": ["world", "--out", "{t}/out", "world.n_pretrain=4", "world.n_train=4", "world.n_validation=2",
              "world.n_test=2"],
    "pretrain": ["pretrain", "--world", "{W}", "--out", "{t}/out", "pretrain.tokens=200"],
    "sample": ["sample", "--problems", "{W}/train.jsonl", "--out", "{t}/out.jsonl", "sample.source=synthetic"],
    "critique": ["critique", "--input", "{S}", "--out", "{t}/out"],
    "refine": ["refine", "--input", "{S}", "--critiques", "{K}", "--out", "{t}/out"],
    "build": ["build", "--solutions", "{S}", "--critiques", "{K}", "--out", "{t}/out", "build.decontaminate=false"],
    "train": ["train", "--model", "{M}", "--data", "{D}", "--out", "{t}/out"],
    "eval": ["eval", "--model", "{M}", "--world", "{W}", "--out", "{t}/out"],
    "judge": ["judge", "--critic", "{M}", "--solutions", "{S}", "--out", "{t}/out"],
    "eval-critic": ["eval-critic", "--critic", "{M}", "--solutions", "{S}", "--out", "{t}/out"],
    "grade": ["grade", "--responses", "{G}"],
    "report": ["report", "{R}"],
    "experiment": ["experiment", "--config", "{E}", "--out", "{t}/out", "--dry-run"],
    "demo": ["demo", "--out", "{t}/out"],
}
CONFIG_CMDS = ["world", "pretrain", "sample", "critique", "refine", "build", "train", "eval", "judge", "eval-critic",
               "experiment", "demo"]


@dataclass
class Case:
    cmd: str
    what: str
    argv: list[str]
    expect: list[str]                      # substrings of the error line (placeholders filled in)
    files: dict[str, Any] = field(default_factory=dict)  # path in {t} -> bytes | str | None (a dir) | fn(ctx)
    fast: bool = False                     # must answer within seconds (unreachable endpoints)
    needs_model: bool = False              # {TM}: a real (micro) pretrained model

    @property
    def id(self) -> str:
        return f"{self.cmd}-{self.what}"


CASES: list[Case] = []


def case(cmd: str, what: str, expect: str | list[str], *, opts: dict | None = None, extra: tuple = (),
         drop: tuple = (), files: dict | None = None, argv: list[str] | None = None, fast: bool = False,
         needs_model: bool = False) -> None:
    """Register a case: BASE[cmd] with options replaced (`opts`, "RUN" for report's run dir), removed
    (`drop`) and overrides appended (`extra`), or a full `argv`."""
    if argv is None:
        argv = list(BASE[cmd])
        for flag in drop:
            i = argv.index(flag)
            del argv[i:i + (1 if flag == "--dry-run" else 2)]
        for k, v in (opts or {}).items():
            if k == "RUN":
                argv[1] = v
            elif k in argv:
                argv[argv.index(k) + 1] = v
            else:  # options before the overrides (argparse takes the positional overrides in one run)
                argv[1:1] = [k, v]
        argv += list(extra)
    CASES.append(Case(cmd, what, argv, [expect] if isinstance(expect, str) else list(expect), files or {}, fast,
                      needs_model))


# ---------------------------------------------------------------------------------------------
# Readers: missing, a directory, not UTF-8, a malformed line, a non-object, an empty file


def reader_cases(cmd: str, label: str, opt: str | None, rel: str, good: dict, empty_words: str, *,
                 path_arg: str | None = None, files: dict | None = None) -> None:
    """The six ways a JSONL input can be unreadable, for the file at `{t}/rel` given by `opt`
    (or already pointed at through `path_arg`, e.g. a world directory holding it)."""
    p = "{t}/" + rel
    opts = {opt: path_arg or p} if opt else {}
    base_files = files or {}
    ok = jl(good)
    case(cmd, f"{label}-missing-file", [p, "not found"], opts=opts, files=base_files)
    case(cmd, f"{label}-dir-not-file", [p, "is a directory"], opts=opts, files={**base_files, rel: None})
    case(cmd, f"{label}-not-utf8", [f"{p}:2", "not UTF-8"], opts=opts, files={**base_files, rel: ok.encode() + NOT_UTF8})
    case(cmd, f"{label}-malformed-json-line", [f"{p}:2", "malformed JSON line"], opts=opts,
         files={**base_files, rel: ok + '{"id": "x", oops}\n'})
    case(cmd, f"{label}-json-not-object", [f"{p}:2", "expected a JSON object, got list"], opts=opts,
         files={**base_files, rel: ok + "[1, 2]\n"})
    case(cmd, f"{label}-empty-file", [p, empty_words], opts=opts, files={**base_files, rel: ""})


def field_case(cmd: str, what: str, opt: str | None, rel: str, rows: list[dict], line: int, words: str, *,
               path_arg: str | None = None, extra: tuple = (), files: dict | None = None) -> None:
    p = "{t}/" + rel
    case(cmd, what, [f"{p}:{line}", words], opts={opt: path_arg or p} if opt else {}, extra=extra,
         files={**(files or {}), rel: jl(*rows)})


# -- sample: problems
reader_cases("sample", "problems", "--problems", "p.jsonl", PROBLEM, "no problems")
P2 = row(PROBLEM, id="q2")
for what, bad, words in [
    ("question-a-number", row(P2, question=7), "field 'question' must be text, got 7"),
    ("question-a-list", row(P2, question=["a"]), "field 'question' must be text"),
    ("id-a-list", row(P2, id=[1]), "field 'id' must be text or an integer"),
    ("answer-a-list", row(P2, answer=["5"]), "field 'answer' must be"),
    ("missing-question", row(P2, question=DROP), "missing field 'question'"),
    ("missing-id", row(P2, id=DROP), "missing field 'id'"),
]:
    field_case("sample", what, "--problems", "p.jsonl", [PROBLEM, bad], 2, words)
case("sample", "duplicate-id", ["{t}/p.jsonl:3", 'duplicate id "q1"', "line 1"], opts={"--problems": "{t}/p.jsonl"},
     files={"p.jsonl": jl(PROBLEM, P2, PROBLEM)})
case("sample", "synthetic-needs-world-problems", ["{t}/p.jsonl", "source=synthetic needs world problems"],
     opts={"--problems": "{t}/p.jsonl"}, files={"p.jsonl": jl(PROBLEM)})
case("sample", "no-problems-given", "needs --problems", drop=("--problems",))
case("sample", "batch-size-0", "sample.batch_size=0: must be at least 1", extra=("sample.batch_size=0",))
case("sample", "n-problems-negative", "sample.n_problems=-1", extra=("sample.n_problems=-1",))
case("sample", "source-bogus", "sample.source='bogus'", extra=("sample.source=bogus",))
case("sample", "error-rate-above-1", "sample.error_rate=2", extra=("sample.error_rate=2",))
for what, model, words in [("model-missing", "{t}/nope", ["{t}/nope", "not a model directory"]),
                           ("model-broken-config", "{BM}", ["{BM}/config.json:1", "invalid JSON"]),
                           ("model-hub-not-cached", HUB, [HUB, "hf download", "HF_HUB_OFFLINE"]),
                           ("model-is-a-file", "{G}", ["{G}", "not a model directory"])]:
    case("sample", what, words, opts={"--model": model}, extra=("sample.source=model",))
case("sample", "model-source-without-model", "needs --model", extra=("sample.source=model",))
case("sample", "out-is-a-directory", ["--out {t}/out.jsonl", "is a directory"], files={"out.jsonl": None})
case("sample", "out-inside-a-file", ["--out {t}/f/out.jsonl", "{t}/f is not a directory"],
     opts={"--out": "{t}/f/out.jsonl"}, files={"f": "x"})
case("sample", "out-foreign-jsonl", ["--out {t}/out.jsonl", "not written by `critiquelab sample`"],
     files={"out.jsonl": jl({"a": 1})})
case("sample", "out-foreign-text", ["--out {t}/out.jsonl", "not written by `critiquelab sample`"],
     files={"out.jsonl": "my notes, not JSON\n"})
IMPORT = ("sample.source=import", "sample.import_preset=metamathqa")
case("sample", "import-not-utf8", ["{t}/imp.jsonl:2", "not UTF-8"], drop=("--problems",),
     extra=(*IMPORT, "sample.import_path={t}/imp.jsonl"),
     files={"imp.jsonl": jl({"query": "q", "response": "r"}).encode() + NOT_UTF8})
case("sample", "import-missing", ["{t}/imp.jsonl", "not found"], drop=("--problems",),
     extra=(*IMPORT, "sample.import_path={t}/imp.jsonl"))
case("sample", "import-json-not-a-list", ["{t}/imp.json", "expected a JSON list"], drop=("--problems",),
     extra=(*IMPORT, "sample.import_path={t}/imp.json"), files={"imp.json": '{"query": "q"}'})
case("sample", "import-field-a-number", ["{t}/imp.jsonl:1", "field 'response' must be text"], drop=("--problems",),
     extra=(*IMPORT, "sample.import_path={t}/imp.jsonl"), files={"imp.jsonl": jl({"query": "q", "response": 5})})

# -- critique: solutions, templates, teachers, shards
reader_cases("critique", "input", "--input", "in.jsonl", SOL, "no solutions")
S2 = row(SOL, id="q2-s0", problem_id="q2")
for what, bad, words in [
    ("solution-a-number", row(S2, solution=5), "field 'solution' must be text, got 5"),
    ("solution-a-list", row(S2, solution=["Step 1"]), "field 'solution' must be text"),
    ("question-a-list", row(S2, question=["q"]), "field 'question' must be text"),
    ("id-an-object", row(S2, id={"a": 1}), "field 'id' must be text or an integer"),
    ("problem-id-a-list", row(S2, problem_id=["q2"]), "field 'problem_id' must be"),
    ("missing-solution", row(S2, solution=DROP), "missing field 'solution'"),
]:
    field_case("critique", what, "--input", "in.jsonl", [SOL, bad], 2, words)
case("critique", "duplicate-id", ["{t}/in.jsonl:3", 'duplicate id "q1-s0"', "line 1"], opts={"--input": "{t}/in.jsonl"},
     files={"in.jsonl": jl(SOL, S2, SOL)})
case("critique", "checker-needs-world-items", ["{t}/in.jsonl", "checker teacher needs world problems"],
     opts={"--input": "{t}/in.jsonl"}, files={"in.jsonl": jl(SOL)})
case("critique", "concurrency-0", "critique.concurrency=0: must be at least 1", extra=("critique.concurrency=0",))
case("critique", "teacher-bogus", "critique.teacher='bogus'", extra=("critique.teacher=bogus",))
case("critique", "temperature-too-high", "critique.temperature=5", extra=("critique.temperature=5",))
case("critique", "prompt-unknown-name", "critique.prompt='nope'", extra=("critique.prompt=nope",))
case("critique", "prompt-without-user", ["{t}/p.yaml", "needs a 'user' template"],
     extra=("critique.prompt={t}/p.yaml",), files={"p.yaml": "system: You are a teacher.\n"})
case("critique", "prompt-unknown-placeholder", ["{t}/p.yaml", "{{question}} and {{solution}}", "unknown"],
     extra=("critique.prompt={t}/p.yaml",), files={"p.yaml": 'user: "Q: {question} S: {solution} {unknown}"\n'})
case("critique", "prompt-not-utf8", ["{t}/p.yaml:1", "not UTF-8"], extra=("critique.prompt={t}/p.yaml",),
     files={"p.yaml": b"user: caf\xe9 {question}\n"})
case("critique", "prompt-invalid-yaml", ["{t}/p.yaml", "invalid YAML"], extra=("critique.prompt={t}/p.yaml",),
     files={"p.yaml": "user: [unclosed\n"})
case("critique", "prompt-missing-file", ["{t}/p.yaml", "not found"], extra=("critique.prompt={t}/p.yaml",))
case("critique", "prompt-bad-task", ["{t}/p.yaml", "task 'grade'"], extra=("critique.prompt={t}/p.yaml",),
     files={"p.yaml": "task: grade\nuser: '{question} {solution}'\n"})
case("critique", "openai-unreachable", ["critique.base_url=http://127.0.0.1:{port}/v1", "cannot connect"],
     extra=("critique.teacher=openai", "critique.base_url=http://127.0.0.1:{port}/v1", "critique.model=gpt-x"),
     fast=True)
case("critique", "openai-remote-without-key", "OPENAI_API_KEY",
     extra=("critique.teacher=openai", "critique.base_url=https://api.example.invalid/v1", "critique.model=gpt-x"))
case("critique", "openai-without-base-url", "critique.teacher=openai needs critique.base_url",
     extra=("critique.teacher=openai", "critique.model=gpt-x"))
case("critique", "hf-teacher-model-missing", ["critique.model={t}/nope", "not a model directory"],
     extra=("critique.teacher=hf", "critique.model={t}/nope"))
case("critique", "hf-teacher-model-broken", ["{BM}/config.json:1", "invalid JSON"],
     extra=("critique.teacher=hf", "critique.model={BM}"))
case("critique", "hf-teacher-hub-not-cached", [HUB, "HF_HUB_OFFLINE"], extra=("critique.teacher=hf", f"critique.model={HUB}"))
for what, shard in [("shard-3-of-3", "3/3"), ("shard-x", "x"), ("shard-1-of-0", "1/0"), ("shard-5-of-2", "5/2")]:
    case("critique", what, [f"--shard '{shard}'", "expected i/n"], opts={"--shard": shard})
case("critique", "refine-prompt-without-critiques", ["critique.prompt='refine_paper' is a refine prompt",
                                                     "critiquelab refine"], extra=("critique.prompt=refine_paper",))

# -- build: solutions, critique rows, settings, import
reader_cases("build", "solutions", "--solutions", "sol.jsonl", SOL, "no solutions")
for what, bad, words in [
    ("solution-a-number", row(S2, solution=5), "field 'solution' must be text, got 5"),
    ("question-a-list", row(S2, question=["q"]), "field 'question' must be text"),
    ("correct-a-string", row(S2, correct="yes"), "field 'correct' must be true/false"),
    ("reference-solution-a-list", row(S2, reference_solution=["x"]), "field 'reference_solution' must be text"),
    ("missing-solution", row(S2, solution=DROP), "missing field 'solution'"),
    ("missing-question", row(S2, question=DROP), "missing field 'question'"),
]:
    field_case("build", what, "--solutions", "sol.jsonl", [SOL, bad], 2, words)
case("build", "duplicate-solution-id", ["{t}/sol.jsonl:3", 'duplicate id "q1-s0"', "line 1"],
     opts={"--solutions": "{t}/sol.jsonl"}, files={"sol.jsonl": jl(SOL, S2, SOL)})
K2 = row(STORE, key="k2", id="q2-s0")
reader_cases("build", "critiques", "--critiques", "k.jsonl", STORE, "no critiques")
for what, bad, words in [
    ("critique-row-missing-key", row(K2, key=DROP), "missing field 'key'"),
    ("critique-row-missing-id", row(K2, id=DROP), "missing field 'id'"),
    ("critique-row-missing-status", row(K2, status=DROP), "missing field 'status'"),
    ("critique-row-missing-input", row(K2, input=DROP), "missing field 'input'"),
    ("critique-row-missing-critique", row(K2, critique=DROP), "missing field 'critique'"),
    ("critique-row-status-a-number", row(K2, status=1), "field 'status' must be text"),
    ("critique-row-critique-a-number", row(K2, critique=3), "field 'critique' must be text"),
    ("critique-row-verdict-a-list", row(K2, verdict=["right"]), "field 'verdict' must be text"),
    ("critique-row-id-a-list", row(K2, id=["q2-s0"]), "field 'id' must be text or an integer"),
]:
    field_case("build", what, "--critiques", "k.jsonl", [STORE, bad], 2, words)
case("build", "critiques-path-mistyped", ["--critiques {t}/critique/critiques.jsnol", "not found"],
     opts={"--critiques": "{t}/critique/critiques.jsnol"}, files={"critique/critiques.jsonl": jl(STORE)})
case("build", "no-critiques-given", "needs --solutions and --critiques", drop=("--critiques",))
case("build", "exports-bogus", ["build.exports", "'bogus'"], extra=("build.exports=[bogus]",))
case("build", "methods-bogus", ["build.methods", "bogus"], extra=("build.methods=[bogus]",))
case("build", "mix-ratio-negative", "build.mix_ratio=-1", extra=("build.mix_ratio=-1",))
case("build", "ngram-0", "build.ngram=0: must be at least 1", extra=("build.ngram=0",))
case("build", "consistency-bogus", "build.consistency='maybe'", extra=("build.consistency=maybe",))
case("build", "sft-teacher-without-teacher-solutions", "--teacher-solutions",
     extra=("build.methods=[sft_teacher]",))
case("build", "cgd-without-refined", ["cgd needs the teacher's refined solutions", "--refined"],
     extra=("build.methods=[cgd]",))
case("build", "refined-path-mistyped", ["--refined {t}/r/refined.jsnol", "not found", "<refine --out>/refined.jsonl"],
     opts={"--refined": "{t}/r/refined.jsnol"}, extra=("build.methods=[cgd]",))
case("build", "cgd-keep-wrong-not-a-bool", "build.cgd_keep_wrong: expected bool", extra=("build.cgd_keep_wrong=maybe",))
case("build", "teacher-solutions-mistyped", ["--teacher-solutions {t}/solve/solutions.jsonl", "not found"],
     opts={"--teacher-solutions": "{t}/solve/solutions.jsonl"}, extra=("build.methods=[sft_teacher]",))
ALPACA = {"instruction": "Critique this.", "input": "Q: 2 + 3? S: 5", "output": "Conclusion: right [END]"}
case("build", "from-alpaca-missing", ["{t}/a.json", "not found"], opts={"--from-alpaca": "{t}/a.json"})
case("build", "from-alpaca-not-utf8", ["{t}/a.jsonl:2", "not UTF-8"], opts={"--from-alpaca": "{t}/a.jsonl"},
     files={"a.jsonl": jl(ALPACA).encode() + NOT_UTF8})
case("build", "from-alpaca-invalid-json", ["{t}/a.json:1", "invalid JSON"], opts={"--from-alpaca": "{t}/a.json"},
     files={"a.json": "[{oops"})
case("build", "from-alpaca-not-a-list", ["{t}/a.json", "expected a JSON list"], opts={"--from-alpaca": "{t}/a.json"},
     files={"a.json": json.dumps(ALPACA)})
case("build", "from-alpaca-row-without-output", ["{t}/a.jsonl:2", "'output'"], opts={"--from-alpaca": "{t}/a.jsonl"},
     files={"a.jsonl": jl(ALPACA, row(ALPACA, output=DROP))})
case("build", "from-alpaca-out-foreign-dir", ["--out {t}/out", "not made by critiquelab"],
     opts={"--from-alpaca": "{t}/a.jsonl"}, files={"a.jsonl": jl(ALPACA), "out/mine.txt": "keep me"})
case("build", "from-alpaca-out-is-a-file", ["--out {t}/out", "exists and is not a directory"],
     opts={"--from-alpaca": "{t}/a.jsonl"}, files={"a.jsonl": jl(ALPACA), "out": "x"})

# -- refine: solutions, their critique store (rows, pairing), the refine template, teachers
reader_cases("refine", "input", "--input", "in.jsonl", SOL, "no solutions")
reader_cases("refine", "critiques", "--critiques", "k.jsonl", STORE, "no critiques")
for what, bad, words in [
    ("critique-row-missing-critique", row(K2, critique=DROP), "missing field 'critique'"),
    ("critique-row-critique-a-number", row(K2, critique=3), "field 'critique' must be text"),
    ("critique-row-missing-input", row(K2, input=DROP), "missing field 'input'"),
    ("critique-row-status-a-number", row(K2, status=1), "field 'status' must be text"),
]:
    field_case("refine", what, "--critiques", "k.jsonl", [STORE, bad], 2, words)
case("refine", "critiques-of-other-solutions", ["--critiques {t}/k.jsonl", "none of its ok critiques is of a solution"],
     opts={"--critiques": "{t}/k.jsonl"}, files={"k.jsonl": jl(STORE, K2)})
case("refine", "solutions-not-a-store", ["{S}:1", "missing field 'status'", "critiquelab critique"],
     opts={"--critiques": "{S}"})
case("refine", "prompt-without-critique", ["{t}/p.yaml", "never uses {{critique}}"],
     extra=("critique.refine_prompt={t}/p.yaml",),
     files={"p.yaml": 'task: refine\nuser: "Q: {question} S: {solution}"\n'})
case("refine", "prompt-unknown-placeholder", ["{t}/p.yaml", "{{question}}, {{solution}} and {{critique}}"],
     extra=("critique.refine_prompt={t}/p.yaml",),
     files={"p.yaml": 'task: refine\nuser: "{question} {solution} {critique} {hint}"\n'})
case("refine", "prompt-a-critique-prompt", ["only a refine prompt reads critiques", "'critique_paper' has task critique"],
     extra=("critique.refine_prompt=critique_paper",))
case("refine", "openai-unreachable", ["critique.base_url=http://127.0.0.1:{port}/v1", "cannot connect"],
     extra=("critique.teacher=openai", "critique.base_url=http://127.0.0.1:{port}/v1", "critique.model=gpt-x"),
     fast=True)
case("refine", "openai-remote-without-key", "OPENAI_API_KEY",
     extra=("critique.teacher=openai", "critique.base_url=https://api.example.invalid/v1", "critique.model=gpt-x"))

# -- train: dataset rows, model, settings
reader_cases("train", "data", "--data", "data.jsonl", EXAMPLE, "empty")
for what, bad, words in [
    ("prompt-a-string", row(EXAMPLE, prompt="What is 2 + 3?"), "field 'prompt' must be a list"),
    ("completion-a-number", row(EXAMPLE, completion=5), "field 'completion' must be a list"),
    ("prompt-list-of-strings", row(EXAMPLE, prompt=["What is 2 + 3?"]), "field 'prompt' must be a non-empty list"),
    ("content-a-number", row(EXAMPLE, completion=[{"role": "assistant", "content": 5}]), "field 'completion'"),
    ("message-without-role", row(EXAMPLE, prompt=[{"content": "q"}]), "field 'prompt'"),
    ("prompt-empty-list", row(EXAMPLE, prompt=[]), "field 'prompt'"),
    ("missing-completion", row(EXAMPLE, completion=DROP), "missing field 'completion'"),
]:
    field_case("train", what, "--data", "data.jsonl", [EXAMPLE, bad], 2, words)
case("train", "dry-run-bad-data", ["{t}/data.jsonl:1", "field 'prompt'"], opts={"--data": "{t}/data.jsonl"},
     extra=("--dry-run",), files={"data.jsonl": jl(row(EXAMPLE, prompt="q"))})
for what, model, words in [("model-missing", "{t}/nope", ["{t}/nope", "not a model directory"]),
                           ("model-broken-config", "{BM}", ["{BM}/config.json:1", "invalid JSON"]),
                           ("model-hub-not-cached", HUB, [HUB, "hf download", "HF_HUB_OFFLINE"]),
                           ("model-config-not-an-object", "{t}/m", ["{t}/m/config.json", "expected a JSON object"])]:
    case("train", what, words, opts={"--model": model}, files={"m/config.json": "[1, 2]"})
case("train", "model-without-tokenizer", ["train.model={M}", "no tokenizer in the directory"])
case("train", "no-data-given", "train.data is required", drop=("--data",))
case("train", "lr-not-a-number", "train.lr: expected float, got 'abc'", extra=("train.lr=abc",))
case("train", "lr-scheduler-bogus", "train.lr_scheduler='bogus'", extra=("train.lr_scheduler=bogus",))
case("train", "batch-size-0", "train.batch_size=0: must be at least 1", extra=("train.batch_size=0",))
case("train", "max-steps-0", "train.max_steps=0", extra=("train.max_steps=0",))
case("train", "deepspeed-missing", ["train.deepspeed={t}/ds.json", "not found"], extra=("train.deepspeed={t}/ds.json",))
case("train", "select-best-on-bogus", "unknown benchmark 'bogus'",
     extra=("train.select_best_on=bogus", "train.save_steps=5"))
case("train", "select-best-on-world-not-utf8", ["{t}/w/validation.jsonl:2", "not UTF-8"],
     opts={"--world": "{t}/w"}, extra=("train.select_best_on=world-validation", "train.save_steps=5"),
     files={"w/validation.jsonl": jl(WORLD_ROW).encode() + NOT_UTF8})
# found only once the model is loaded (inside the claimed output, which is removed again): a real micro model
case("train", "every-example-too-long", "every example is longer than max_length=8",
     opts={"--model": "{TM}"}, extra=("train.too_long=drop", "train.max_length=8"), needs_model=True)
case("train", "out-holds-a-world", ["--out {W}", "holds a critiquelab 'world' output"], opts={"--out": "{W}"})

# -- eval: world rows, benchmarks, limits, backends
reader_cases("eval", "world-test", "--world", "w/test.jsonl", WORLD_ROW, "no items", path_arg="{t}/w")
case("eval", "world-dir-missing", ["{t}/nope/test.jsonl", "not found"], opts={"--world": "{t}/nope"})
W2 = row(WORLD_ROW, id="w2")
for what, bad, words in [
    ("world-row-missing-question", row(W2, question=DROP), "missing field 'question'"),
    ("world-row-missing-answer", row(W2, answer=DROP), "missing field 'answer'"),
    ("world-row-missing-id", row(W2, id=DROP), "missing field 'id'"),
    ("world-row-question-a-number", row(W2, question=3), "field 'question' must be text"),
    ("world-row-answer-a-list", row(W2, answer=[5]), "field 'answer' must be"),
]:
    field_case("eval", what, "--world", "w/test.jsonl", [WORLD_ROW, bad], 2, words, path_arg="{t}/w")
case("eval", "world-duplicate-id", ["{t}/w/test.jsonl:3", 'duplicate id "w1"', "line 1"], opts={"--world": "{t}/w"},
     files={"w/test.jsonl": jl(WORLD_ROW, W2, WORLD_ROW)})
case("eval", "benchmark-bogus", "unknown benchmark 'math-5000'", opts={"--benchmarks": "math-5000"})
case("eval", "benchmark-file-absent", ["gsm8k/test.jsonl", "benchmark file not found"], opts={"--benchmarks": "gsm8k"})
case("eval", "world-benchmark-without-world", "needs a world directory", drop=("--world",))
case("eval", "limit-negative", "eval.limit=-1: must be at least 1", opts={"--limit": "-1"})
case("eval", "limit-0", "eval.limit=0: must be at least 1", opts={"--limit": "0"})
case("eval", "limit-not-a-number", "eval.limit: expected int, got 'ten'", opts={"--limit": "ten"})
case("eval", "batch-size-0", "eval.batch_size=0: must be at least 1", extra=("eval.batch_size=0",))
case("eval", "prompt-bogus", "eval.prompt='bogus'", extra=("eval.prompt=bogus",))
case("eval", "backend-bogus", "eval.backend='bogus'", extra=("eval.backend=bogus",))
case("eval", "fewshot-without-gsm8k-train", ["gsm8k/train.jsonl", "not found"], extra=("eval.prompt=fewshot",))
for what, model, words in [("model-missing", "{t}/nope", ["{t}/nope", "not a model directory"]),
                           ("model-broken-config", "{BM}", ["{BM}/config.json:1", "invalid JSON"]),
                           ("model-hub-not-cached", HUB, [HUB, "hf download", "HF_HUB_OFFLINE"])]:
    case("eval", what, words, opts={"--model": model})
case("eval", "openai-unreachable", ["http://127.0.0.1:{port}/v1", "cannot connect"],
     extra=("eval.backend=openai", "eval.base_url=http://127.0.0.1:{port}/v1"), fast=True)
case("eval", "openai-without-base-url", "eval.backend=openai needs eval.base_url", extra=("eval.backend=openai",))
# answer types and the benchmarks beyond math (issue 26)
case("eval", "benchmark-bogus-beyond-math", ["unknown benchmark 'gpqa'", "gpqa_diamond"], opts={"--benchmarks": "gpqa"})
case("eval", "answer-type-does-not-fit-the-problems", ["{t}/p.jsonl:2", "answer '5' is not an option letter",
                                                       "eval.answer_type"],
     opts={"--benchmarks": "{t}/p.jsonl"}, extra=("eval.answer_type=choice",),
     files={"p.jsonl": jl(row(PROBLEM, answer="B"), row(PROBLEM, id="q2"))})
case("eval", "answer-type-does-not-fit-a-benchmark", "eval.answer_type=choice does not fit benchmark 'gsm8k'",
     opts={"--benchmarks": "gsm8k"}, extra=("eval.answer_type=choice",))
case("eval", "answer-type-bogus", "eval.answer_type='letters'", extra=("eval.answer_type=letters",))
case("eval", "choice-permutations-0", "eval.choice_permutations=0: must be at least 1",
     extra=("eval.choice_permutations=0",))
case("eval", "choice-prompt-bogus", "eval.choice_prompt='mmlu'", extra=("eval.choice_prompt=mmlu",))
case("eval", "hf-benchmark-offline", ["hf:critiquelab-test/no-such-set", "not loadable offline"],
     opts={"--benchmarks": "hf:critiquelab-test/no-such-set:test"})
case("eval", "hf-fields-bogus", "eval.hf_fields: unknown ['prompt']",
     opts={"--benchmarks": "hf:critiquelab-test/no-such-set"}, extra=("eval.hf_fields.prompt=text",))
case("eval", "bbeh-example-without-target", ["{t}/bm/bbeh/time_arithmetic.json: examples[1]", "'target'"],
     opts={"--benchmarks": "bbeh_time_arithmetic", "--benchmarks-dir": "{t}/bm"},
     files={"bm/bbeh/time_arithmetic.json": json.dumps({"examples": [{"input": "q", "target": "[a]"},
                                                                       {"input": "q"}]})})
case("eval", "bbeh-not-its-layout", ["{t}/bm/bbeh/disambiguation_qa.json", "expected BBEH's layout"],
     opts={"--benchmarks": "bbeh_disambiguation_qa", "--benchmarks-dir": "{t}/bm"},
     files={"bm/bbeh/disambiguation_qa.json": json.dumps([{"input": "q", "target": "(A)"}])})
case("eval", "tokenizer-without-chat-template", ["{t}/m", "no chat template"], opts={"--model": "{t}/m"},
     files={"m": lambda ctx: copy_model(ctx, chat_template=False)}, needs_model=True)
case("eval", "out-holds-a-world", ["--out {W}", "holds a critiquelab 'world' output"], opts={"--out": "{W}"})

# -- judge and eval-critic: solutions, labels, critic
for cmd in ("judge", "eval-critic"):
    reader_cases(cmd, "solutions", "--solutions", "sol.jsonl", SOL, "no solutions")
    for what, bad, words in [
        ("solution-a-number", row(S2, solution=5), "field 'solution' must be text, got 5"),
        ("question-a-list", row(S2, question=["q"]), "field 'question' must be text"),
        ("id-a-list", row(S2, id=["x"]), "field 'id' must be text or an integer"),
        ("missing-solution", row(S2, solution=DROP), "missing field 'solution'"),
    ]:
        field_case(cmd, what, "--solutions", "sol.jsonl", [SOL, bad], 2, words)
    case(cmd, "duplicate-id", ["{t}/sol.jsonl:3", 'duplicate id "q1-s0"', "line 1"],
         opts={"--solutions": "{t}/sol.jsonl"}, files={"sol.jsonl": jl(SOL, S2, SOL)})
    for what, model, words in [("critic-missing", "{t}/nope", ["{t}/nope", "not a model directory"]),
                               ("critic-broken-config", "{BM}", ["{BM}/config.json:1", "invalid JSON"]),
                               ("critic-hub-not-cached", HUB, [HUB, "hf download", "HF_HUB_OFFLINE"])]:
        case(cmd, what, words, opts={"--critic": model})
    case(cmd, "openai-unreachable", ["http://127.0.0.1:{port}/v1", "cannot connect"],
         extra=("critic.backend=openai", "critic.base_url=http://127.0.0.1:{port}/v1"), fast=True)
    case(cmd, "batch-size-0", "critic.batch_size=0: must be at least 1", extra=("critic.batch_size=0",))
    case(cmd, "backend-bogus", "critic.backend='bogus'", extra=("critic.backend=bogus",))
case("eval-critic", "max-new-tokens-0", "critic.max_new_tokens=0", extra=("critic.max_new_tokens=0",))
case("eval-critic", "correct-labels-absent", ["{t}/sol.jsonl", "no row has a 'correct' label"],
     opts={"--solutions": "{t}/sol.jsonl"}, files={"sol.jsonl": jl(row(SOL, correct=DROP), row(S2, correct=DROP))})
PRM = {"idx": "p1", "classification": "circular", "original_question": "q", "modified_question": "q",
       "original_process": ["1. a", "2. b", "3. c"], "modified_process": ["1. a", "2. x", "3. c"], "error_steps": [2]}
PRM_ARGS = {"--benchmark": "prmbench", "--benchmarks-dir": "{t}/bm"}
case("eval-critic", "prmbench-error-steps-past-the-steps", ["{t}/bm/prmbench/x.jsonl:2", "error_steps [5, 7]",
                                                           "point past the 3 steps"],
     opts=PRM_ARGS, drop=("--solutions",), files={"bm/prmbench/x.jsonl": jl(PRM, row(PRM, idx="p2", error_steps=[5, 7]))})
case("eval-critic", "prmbench-error-steps-empty", ["{t}/bm/prmbench/x.jsonl:1", "'error_steps' must be a non-empty"],
     opts=PRM_ARGS, drop=("--solutions",), files={"bm/prmbench/x.jsonl": jl(row(PRM, error_steps=[]))})
case("eval-critic", "prmbench-row-missing-steps", ["{t}/bm/prmbench/x.jsonl:1", "missing field 'modified_process'"],
     opts=PRM_ARGS, drop=("--solutions",), files={"bm/prmbench/x.jsonl": jl(row(PRM, modified_process=DROP))})
case("eval-critic", "prmbench-absent", ["{t}/bm/prmbench", "no PRMBench files"], opts=PRM_ARGS, drop=("--solutions",),
     files={"bm": None})
case("eval-critic", "benchmark-bogus", "--benchmark prmbench2: unknown critic benchmark (valid: prmbench)",
     opts={"--benchmark": "prmbench2"}, drop=("--solutions",))
case("eval-critic", "benchmark-and-solutions", "give --solutions FILE (labelled solutions) or --benchmark prmbench",
     opts={"--benchmark": "prmbench"})
case("eval-critic", "neither-benchmark-nor-solutions", "or --benchmark prmbench, one of the two", drop=("--solutions",))
case("eval-critic", "benchmark-limit-0", "critic.benchmark_limit=0: must be at least 1",
     opts=PRM_ARGS, drop=("--solutions",), extra=("critic.benchmark_limit=0",))
for what, bad, words in [
    ("correct-a-string", row(S2, correct="yes"), "field 'correct' must be true/false"),
    ("problem-id-a-list", row(S2, problem_id=["q2"]), "field 'problem_id' must be text or an integer"),
    ("problem-id-a-float", row(S2, problem_id=2.5), "field 'problem_id' must be text or an integer"),
    ("first-error-step-a-string", row(S2, first_error_step="2"), "field 'first_error_step' must be an integer"),
    ("answer-a-list", row(S2, answer=[5]), "field 'answer' must be"),
]:
    field_case("eval-critic", what, "--solutions", "sol.jsonl", [SOL, bad], 2, words)

# -- grade: responses
reader_cases("grade", "responses", "--responses", "r.jsonl", RESPONSE, "no responses")
for what, bad, words in [
    ("response-a-number", row(RESPONSE, response=5), "field 'response' must be text, got 5"),
    ("response-a-list", row(RESPONSE, response=["x"]), "field 'response' must be text"),
    ("reference-a-list", row(RESPONSE, reference=["5"]), "field 'reference' must be"),
    ("reference-an-object", row(RESPONSE, reference={"a": 5}), "field 'reference' must be"),
    ("missing-reference", row(RESPONSE, reference=DROP), "missing field 'reference'"),
    ("missing-response", row(RESPONSE, response=DROP), "missing field 'response'"),
]:
    field_case("grade", what, "--responses", "r.jsonl", [RESPONSE, bad], 2, words)

# -- pretrain: the world's pretrain.jsonl
reader_cases("pretrain", "world-pretrain", "--world", "w/pretrain.jsonl", PRETRAIN_ROW, "no pretraining problems", path_arg="{t}/w")
case("pretrain", "world-dir-missing", ["{t}/nope/pretrain.jsonl", "not found"], opts={"--world": "{t}/nope"})
PR2 = row(PRETRAIN_ROW, id="w2")
for what, bad, words in [
    ("row-missing-question", row(PR2, question=DROP), "missing field 'question'"),
    ("row-missing-solution", row(PR2, solution=DROP), "missing field 'solution'"),
    ("row-missing-steps", row(PR2, steps=DROP), "missing field 'steps'"),
    ("row-missing-start", row(PR2, start=DROP), "missing field 'start'"),
    ("row-steps-a-string", row(PR2, steps="+3"), "field 'steps' must be a list"),
    ("row-start-a-string", row(PR2, start="2"), "field 'start' must be an integer"),
    ("row-question-a-number", row(PR2, question=1), "field 'question' must be text"),
]:
    field_case("pretrain", what, "--world", "w/pretrain.jsonl", [PRETRAIN_ROW, bad], 2, words, path_arg="{t}/w")
case("pretrain", "hidden-size-0", "model.hidden_size=0: must be at least 1", extra=("model.hidden_size=0",))
case("pretrain", "num-heads-3", "model.num_heads=3 must divide hidden_size=128", extra=("model.num_heads=3",))
case("pretrain", "batch-size-0", "pretrain.batch_size=0: must be at least 1", extra=("pretrain.batch_size=0",))
case("pretrain", "tokens-negative", "pretrain.tokens=-1: must be at least 1", extra=("pretrain.tokens=-1",))
case("pretrain", "vocab-too-small", "model.vocab_size=10", extra=("model.vocab_size=10",))

# -- world
case("world", "max-number-0", "world.max_number=0: must be at least 2", extra=("world.max_number=0",))
case("world", "operations-with-x", "world.operations='*+x'", extra=("world.operations=*+x",))
case("world", "operations-empty", "world.operations=''", extra=("world.operations=",))
case("world", "n-test-negative", "world.n_test=-1", extra=("world.n_test=-1",))
case("world", "min-steps-above-max", "min_steps=4 is above max_steps=2", extra=("world.min_steps=4", "world.max_steps=2"))
case("world", "nothing-fits", "no problem with 4+ steps fits",
     extra=("world.operations=+", "world.max_number=2", "world.max_value=4", "world.min_steps=4"))
case("world", "config-unclosed-bracket", ["{t}/c.yaml:2", "invalid YAML"], opts={"--config": "{t}/c.yaml"},
     files={"c.yaml": "train:\n  lr: [1, 2\n"})
case("world", "config-unclosed-quote", ["{t}/c.yaml:2", "invalid YAML"], opts={"--config": "{t}/c.yaml"},
     files={"c.yaml": 'world:\n  operations: "+-\n  seed: 1\n'})
case("world", "seed-not-a-number", "world.seed: expected int, got 'abc'", extra=("world.seed=abc",))

# -- report: run directories and their files
RUN_OK = {"run/cells.json": json.dumps([CELL]), "run/eval/cft-s0/results.json": json.dumps(RESULTS),
          "run/eval/cft-s0/world.jsonl": ITEMS}
case("report", "run-dir-missing", ["{t}/nope", "not found"], opts={"RUN": "{t}/nope"})
case("report", "run-dir-is-a-file", ["{t}/f", "not a directory"], opts={"RUN": "{t}/f"}, files={"f": "x"})
case("report", "cells-not-utf8", ["{t}/run/cells.json:1", "not UTF-8"], opts={"RUN": "{t}/run"},
     files={**RUN_OK, "run/cells.json": b'[{"name": "caf\xe9"}]'})
case("report", "cells-invalid-json", ["{t}/run/cells.json:1", "invalid JSON"], opts={"RUN": "{t}/run"},
     files={**RUN_OK, "run/cells.json": "[{"})
case("report", "cells-not-a-list", ["{t}/run/cells.json", "expected a JSON list of cells"], opts={"RUN": "{t}/run"},
     files={**RUN_OK, "run/cells.json": json.dumps(CELL)})
case("report", "cells-a-directory", ["{t}/run/cells.json", "is a directory"], opts={"RUN": "{t}/run"},
     files={**RUN_OK, "run/cells.json": None})
case("report", "cell-missing-method", ["{t}/run/cells.json:1", "missing field 'method'"], opts={"RUN": "{t}/run"},
     files={**RUN_OK, "run/cells.json": json.dumps([row(CELL, method=DROP)])})
case("report", "cell-name-a-number", ["{t}/run/cells.json:1", "field 'name' must be text"], opts={"RUN": "{t}/run"},
     files={**RUN_OK, "run/cells.json": json.dumps([row(CELL, name=3)])})
case("report", "cell-seed-a-string", ["{t}/run/cells.json:1", "field 'seed' must be an integer"],
     opts={"RUN": "{t}/run"}, files={**RUN_OK, "run/cells.json": json.dumps([row(CELL, seed="0")])})
case("report", "results-not-utf8", ["{t}/run/eval/cft-s0/results.json:1", "not UTF-8"], opts={"RUN": "{t}/run"},
     files={**RUN_OK, "run/eval/cft-s0/results.json": b'{"benchmarks": "caf\xe9"}'})
case("report", "results-invalid-json", ["{t}/run/eval/cft-s0/results.json:1", "invalid JSON"], opts={"RUN": "{t}/run"},
     files={**RUN_OK, "run/eval/cft-s0/results.json": '{"benchmarks": '})
case("report", "results-without-benchmarks", ["{t}/run/eval/cft-s0/results.json", "expected {{\"benchmarks\""],
     opts={"RUN": "{t}/run"}, files={**RUN_OK, "run/eval/cft-s0/results.json": json.dumps({"world": {}})})
case("report", "results-a-list", ["{t}/run/eval/cft-s0/results.json", "expected {{\"benchmarks\""],
     opts={"RUN": "{t}/run"}, files={**RUN_OK, "run/eval/cft-s0/results.json": "[]"})
BENCH = RESULTS["benchmarks"]["world"]
for what, bad, words in [("results-missing-accuracy", row(BENCH, accuracy=DROP), "missing field 'accuracy'"),
                         ("results-n-a-string", row(BENCH, n="2"), "field 'n' must be an integer"),
                         ("results-ci-a-string", row(BENCH, ci95="0.1-0.9"), "field 'ci95' must be a list")]:
    case("report", what, ["{t}/run/eval/cft-s0/results.json", words], opts={"RUN": "{t}/run"},
         files={**RUN_OK, "run/eval/cft-s0/results.json": json.dumps({"benchmarks": {"world": bad}})})
case("report", "items-malformed-line", ["{t}/run/eval/cft-s0/world.jsonl:2", "malformed JSON line"],
     opts={"RUN": "{t}/run"}, files={**RUN_OK, "run/eval/cft-s0/world.jsonl": ITEMS.splitlines()[0] + "\n{oops\n"})
case("report", "items-missing-correct", ["{t}/run/eval/cft-s0/world.jsonl:1", "missing field 'correct'"],
     opts={"RUN": "{t}/run"}, files={**RUN_OK, "run/eval/cft-s0/world.jsonl": jl({"id": "w1"})})
case("report", "train-log-without-loss-curve", ["{t}/run/models/cft-s0/train_log.json", "loss_curve"],
     opts={"RUN": "{t}/run"}, files={**RUN_OK, "run/models/cft-s0/train_log.json": json.dumps({"steps": 3})})
case("report", "train-log-not-utf8", ["{t}/run/models/cft-s0/train_log.json:1", "not UTF-8"],
     opts={"RUN": "{t}/run"}, files={**RUN_OK, "run/models/cft-s0/train_log.json": b'{"steps": "caf\xe9"}'})
case("report", "critic-json-without-metrics", ["{t}/run/critic/cft-s0/critic.json", "metrics"],
     opts={"RUN": "{t}/run"}, files={**RUN_OK, "run/critic/cft-s0/critic.json": json.dumps({"critic": "x"})})
case("report", "manifest-invalid-json", ["{t}/run/manifest.json:1", "invalid JSON"],
     opts={"RUN": "{t}/run"}, files={**RUN_OK, "run/manifest.json": "{"})
case("report", "publish-into-foreign-dir", ["--publish {t}/pub", "not made by critiquelab"],
     opts={"--publish": "{t}/pub"}, files={"pub/mine.txt": "keep me"})
case("report", "publish-is-a-file", ["--publish {t}/pub", "exists and is not a directory"],
     opts={"--publish": "{t}/pub"}, files={"pub": "x"})
case("report", "publish-inside-a-file", ["--publish {t}/f/pub", "cannot create the directory ({t}/f is not a directory)"],
     opts={"--publish": "{t}/f/pub"}, files={"f": "x"})
case("report", "publish-into-a-world", ["--publish {W}", "holds a critiquelab 'world' output"],
     opts={"--publish": "{W}"})

# -- experiment and demo
EXP = "{t}/x.yaml"


def exp_yaml(extra: str):
    """The valid experiment config plus (or with) `extra` YAML lines."""
    return lambda ctx: Path(ctx["E"]).read_text() + extra


for what, extra_yaml, words in [
    ("seeds-repeated", "seeds: [1, 1]\n", "seeds: need one or more distinct seeds"),
    ("data-sizes-negative", "data_sizes: [-5]\n", "data_sizes: must be positive"),
    ("data-sizes-too-big", "data_sizes: [50]\n", "data_sizes [50] exceed the 12 training questions"),
    ("methods-bogus", "build: {methods: [bogus]}\n", "build.methods: unknown ['bogus']"),
    ("benchmarks-bogus", "eval: {benchmarks: [aime2099]}\n", "eval.benchmarks: unknown 'aime2099'"),
    ("source-name-bad", "sources: {'a b': {}}\n", "sources: name 'a b'"),
    ("source-key-unknown", "sources: {s: {tempreature: 1}}\n", "sources.s.tempreature: unknown key"),
    ("teacher-openai-without-model", "teachers: {api: {teacher: openai}}\n", "teachers.api: teacher openai needs"),
    ("critic-methods-not-trained", "critic: {n_problems: 2, methods: [sft_noisy]}\n",
     "critic.methods: ['sft_noisy'] are not trained"),
    ("base-model-missing", "base_model: /nonexistent/critiquelab-model\n",
     ["base_model=/nonexistent/critiquelab-model", "not a model directory"]),
]:
    case("experiment", what, words, opts={"--config": EXP}, files={"x.yaml": exp_yaml(extra_yaml)})
# (a dry run plans a hub model it cannot see with a MISSING line instead: it reads nothing from the network)
case("experiment", "base-model-hub-not-cached", [HUB, "HF_HUB_OFFLINE"], opts={"--config": EXP},
     files={"x.yaml": exp_yaml(f"base_model: {HUB}\n")}, drop=("--dry-run",))
case("experiment", "import-file-not-utf8", ["{t}/imp.jsonl:2", "not UTF-8"], opts={"--config": EXP},
     files={"x.yaml": lambda ctx: Path(ctx["E"]).read_text() + "sources: {imp: {source: import, import_path: "
            f"{ctx['t']}/imp.jsonl, import_preset: metamathqa}}}}\n"
            "critique: {teacher: openai, model: m, base_url: 'http://127.0.0.1:9/v1'}\n",
            "imp.jsonl": jl({"query": "q", "response": "r"}).encode() + NOT_UTF8})
case("experiment", "no-config", "experiment needs --config", drop=("--config",))
case("demo", "preset-unknown", "unknown preset 'huge' (valid: fast, full, gpu)", opts={"--preset": "huge"})
case("demo", "lr-scheduler-bogus", "train.lr_scheduler='bogus'", extra=("train.lr_scheduler=bogus",))
case("demo", "num-heads-3", "model.num_heads=3", extra=("model.num_heads=3",))
case("demo", "batch-size-0", "eval.batch_size=0", extra=("eval.batch_size=0",))

# -- output paths of every directory-writing stage (inputs valid, so only --out is wrong)
for cmd in ("world", "pretrain", "critique", "refine", "build", "train", "eval", "judge", "eval-critic", "experiment",
            "demo"):
    label = "--out"  # the option the user passed (train too, not train.output_dir)
    drop = ("--dry-run",) if cmd == "experiment" else ()
    case(cmd, "out-is-a-file", [f"{label} {{t}}/out", "exists and is not a directory"], drop=drop, files={"out": "x"})
    case(cmd, "out-inside-a-file", [f"{label} {{t}}/f/out", "cannot create the directory (Not a directory)"],
         drop=drop, opts={"--out": "{t}/f/out"}, files={"f": "x"})
    case(cmd, "out-foreign-non-empty-dir", [f"{label} {{t}}/out", "not made by critiquelab"], drop=drop,
         files={"out/mine.txt": "keep me", "out/sub/notes.md": "mine too"})

# -- every config-taking subcommand: the config file and the overrides
SECTION = {"world": "world", "pretrain": "pretrain", "sample": "sample", "critique": "critique", "refine": "critique",
           "build": "build",
           "train": "train", "eval": "eval", "judge": "critic", "eval-critic": "critic", "experiment": "train",
           "demo": "train"}
for cmd in CONFIG_CMDS:
    sec = SECTION[cmd]
    case(cmd, "override-unknown-key", f"{sec}.n_tset: unknown key", extra=(f"{sec}.n_tset=3",))
    case(cmd, "override-unknown-section", "wrold: unknown key", extra=("wrold.n_test=3",))
    case(cmd, "override-without-equals", "override 'train.lr': expected key=value", extra=("train.lr",))
    case(cmd, "override-wrong-type", "train.lr: expected float, got 'abc'", extra=("train.lr=abc",))
    case(cmd, "config-invalid-yaml", ["{t}/c.yaml:2", "invalid YAML"], opts={"--config": "{t}/c.yaml"},
         files={"c.yaml": "train:\n  lr: 1e-4: 2\n"})
    case(cmd, "config-not-a-mapping", ["{t}/c.yaml", "expected a mapping"], opts={"--config": "{t}/c.yaml"},
         files={"c.yaml": "- train\n- eval\n"})
    case(cmd, "config-not-utf8", ["{t}/c.yaml:2", "not UTF-8"], opts={"--config": "{t}/c.yaml"},
         files={"c.yaml": b"train:\n  lr: caf\xe9\n"})
    case(cmd, "config-missing", ["{t}/c.yaml", "config file not found"], opts={"--config": "{t}/c.yaml"})
    case(cmd, "config-a-directory", ["{t}/c.yaml", "is a directory"], opts={"--config": "{t}/c.yaml"},
         files={"c.yaml": None})
    case(cmd, "config-section-not-a-mapping", ["{t}/c.yaml", "train: expected a mapping"],
         opts={"--config": "{t}/c.yaml"}, files={"c.yaml": "train: 5\n"})

assert len({c.id for c in CASES}) == len(CASES), [i for i, n in Counter(c.id for c in CASES).items() if n > 1]


# ---------------------------------------------------------------------------------------------
# Fixtures and the check


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    """Small valid inputs, built once: a world, solutions, their critiques, a dataset, a fake model."""
    from critiquelab.build import run_build
    from critiquelab.config import BuildConfig, CritiqueConfig, SampleConfig, WorldConfig
    from critiquelab.critique import run_critique
    from critiquelab.sample import run_sample
    from critiquelab.world import write_world

    d = tmp_path_factory.mktemp("bad-inputs-fixtures")
    write_world(WorldConfig(n_pretrain=20, n_train=12, n_validation=4, n_test=6), d / "world")
    run_sample(d / "world" / "train.jsonl", d / "solutions.jsonl", SampleConfig(source="synthetic", n_problems=12))
    run_critique(d / "solutions.jsonl", d / "critique", CritiqueConfig())
    run_build(d / "solutions.jsonl", d / "critique" / "critiques.jsonl", d / "dataset",
              BuildConfig(decontaminate=False))
    (d / "model").mkdir()
    (d / "model" / "config.json").write_text(json.dumps({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}))
    (d / "broken").mkdir()
    (d / "broken" / "config.json").write_text('{"model_type": "qwen2",')
    (d / "responses.jsonl").write_text(jl(RESPONSE))
    for rel, text in RUN_OK.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    (d / "exp.yaml").write_text(
        f"seeds: [0]\nbase_model: {d / 'model'}\n"
        "world: {n_pretrain: 20, n_train: 12, n_validation: 4, n_test: 6}\n"
        "sample: {source: synthetic, n_problems: 12}\n"
        "build: {methods: [sft_reference, cft], decontaminate: false}\n"
        "critic: {n_problems: 0}\neval: {benchmarks: [world]}\n")
    (d / "benchmarks").mkdir()
    (d / "cache").mkdir()
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return SimpleNamespace(dir=d, port=port, ctx={
        "W": str(d / "world"), "S": str(d / "solutions.jsonl"), "K": str(d / "critique" / "critiques.jsonl"),
        "D": str(d / "dataset" / "cft.jsonl"), "M": str(d / "model"), "BM": str(d / "broken"),
        "R": str(d / "run"), "E": str(d / "exp.yaml"), "G": str(d / "responses.jsonl"), "port": str(port)})


@pytest.fixture(scope="module")
def micro_model(fx, tmp_path_factory):
    """A real Qwen2 model with its tokenizer and chat template, pretrained for one step (~5 s; the
    session's tiny_model takes a minute or more): for the cases found only once a model is loaded."""
    from critiquelab.config import ModelConfig, PretrainConfig
    from critiquelab.pretrain import pretrain

    path = tmp_path_factory.mktemp("micro-model") / "model"
    pretrain(fx.dir / "world", path, ModelConfig(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                                                 intermediate_size=32, vocab_size=300, max_position_embeddings=256),
             PretrainConfig(tokens=300, batch_size=4))
    return path


def offline_env(monkeypatch, fx) -> dict:
    env = {"HF_HUB_OFFLINE": "1", "CRITIQUELAB_BENCHMARKS": str(fx.dir / "benchmarks"),
           "CRITIQUELAB_CACHE": str(fx.dir / "cache")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import; pin it
    return env


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root`: files with size and mtime, directories as such."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = ("dir",)
        for name in filenames:
            st = os.stat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = ("file", st.st_size, st.st_mtime_ns)
    return out


def prepare(c: Case, fx, tmp: Path, request) -> tuple[list[str], list[str]]:
    ctx = {**fx.ctx, "t": str(tmp)}
    if c.needs_model:
        ctx["TM"] = str(request.getfixturevalue("micro_model"))
    for rel, content in c.files.items():
        p = tmp / rel
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        content = content(ctx) if callable(content) else content
        if content is not None:  # (a callable may make the path itself)
            p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return [a.format(**ctx) for a in c.argv], [e.format(**ctx) for e in c.expect]


def count_connects(monkeypatch, address: tuple[str, int]) -> list:
    """Every connection attempt to `address` from now on, by any client (urllib, httpx, asyncio)."""
    attempts: list = []
    for name in ("connect", "connect_ex"):
        real = getattr(socket.socket, name)

        def spy(sock, addr, _real=real):
            if tuple(addr[:2]) == address:
                attempts.append(addr)
            return _real(sock, addr)

        monkeypatch.setattr(socket.socket, name, spy)
    return attempts


def check_error(c: Case, rc: int, out: str, err: str, expect: list[str]) -> None:
    assert "Traceback" not in out + err, err
    assert rc == 2, f"exit {rc} (want 2); stderr: {err!r}"
    lines = err.splitlines()
    assert len(lines) == 1, f"want one line on stderr, got {len(lines)}: {err!r}"
    prefix = f"critiquelab {c.cmd}: error: "
    assert lines[0].startswith(prefix), lines[0]
    for e in expect:
        assert e in lines[0], f"{e!r} not in {lines[0]!r}"


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(c: Case, fx, tmp_path, monkeypatch, capsys, request):
    offline_env(monkeypatch, fx)
    argv, expect = prepare(c, fx, tmp_path, request)
    before, shared = snapshot(tmp_path), snapshot(fx.dir)
    outputs = [argv[argv.index(f) + 1] for f in ("--out", "--publish") if f in argv]
    absent = [o for o in outputs if not Path(o).exists()]
    attempts = count_connects(monkeypatch, ("127.0.0.1", int(fx.ctx["port"]))) if c.fast else []
    try:
        rc = main(argv)
    except BaseException:  # noqa: BLE001  (SystemExit included: every path must return its status)
        pytest.fail(f"uncaught exception from critiquelab {' '.join(argv)}:\n{traceback.format_exc()}")
    out, err = capsys.readouterr()
    check_error(c, rc, out, err, expect)
    after = snapshot(tmp_path)
    assert after == before, (f"files changed: added {sorted(set(after) - set(before))}, removed "
                             f"{sorted(set(before) - set(after))}, modified "
                             f"{sorted(k for k in set(after) & set(before) if after[k] != before[k])}")
    assert not [o for o in absent if Path(o).exists()], "an output path was left behind"
    assert snapshot(fx.dir) == shared, "a shared fixture file was touched"
    if c.fast:  # answered at once: one look at the port, no retries (each would back off for seconds)
        assert len(attempts) == 1, f"{len(attempts)} connection attempts to an unreachable endpoint (want 1)"


def test_the_sweep_covers_every_subcommand():
    per_cmd = Counter(c.cmd for c in CASES)
    assert set(per_cmd) == {"world", "pretrain", "sample", "critique", "refine", "build", "train", "eval", "judge",
                            "eval-critic", "grade", "report", "experiment", "demo"}
    assert len(CASES) >= 150, per_cmd


# The real exit path: a fresh interpreter, its stderr and exit status.
SUBPROCESS = ["grade-responses-malformed-json-line", "build-critiques-path-mistyped", "eval-openai-unreachable",
              "train-model-hub-not-cached", "world-out-foreign-non-empty-dir"]


def test_real_exit_path_in_a_subprocess(fx, tmp_path, monkeypatch):
    env = {**os.environ, **offline_env(monkeypatch, fx)}
    env.pop("OPENAI_API_KEY", None)
    runs = []
    for cid in SUBPROCESS:
        (c,) = [c for c in CASES if c.id == cid]
        tmp = tmp_path / cid
        tmp.mkdir()
        argv, expect = prepare(c, fx, tmp, None)
        before = snapshot(tmp)
        proc = subprocess.Popen([sys.executable, "-m", "critiquelab.cli", *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        runs.append((c, proc, tmp, before, expect))
    for c, proc, tmp, before, expect in runs:
        out, err = proc.communicate(timeout=120)
        check_error(c, proc.returncode, out, err, expect)
        assert snapshot(tmp) == before
