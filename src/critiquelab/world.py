"""The synthetic math world: problems, noisy solutions and an exact step checker.

A problem is a start value and 2-4 operations told as a word problem::

    Mia has 23 apples. Then Mia buys 15 more. Then Mia loses 8. Then Mia triples them.
    How many apples does Mia have now?

Its reference solution is one line per step ending in a boxed answer::

    Step 1: 23 + 15 = 38
    Step 2: 38 - 8 = 30
    Step 3: 30 * 3 = 90
    The answer is \\boxed{90}.

Splits (pretrain / train / validation / test) are decided by a hash of the problem's arithmetic
(start, operations, operands), so a problem can never sit in two splits, whatever the seed or
the sizes. `noisy_solution` injects one realistic error at a chosen step and lets it propagate;
`check` walks a solution step by step against the true computation and writes a critique in the
paper's style, ending `Conclusion: right [END]` or `Conclusion: wrong [END]`. It is the offline
teacher: exact, and it never executes the text it reads.

    critiquelab world --out runs/w   # writes {pretrain,train,validation,test}.jsonl
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

from critiquelab.config import CRITIQUE_STYLES, WorldConfig
from critiquelab.io import UserError, mark_complete, output_dir, stable_hash, write_json, write_jsonl

__all__ = [
    "SPLITS", "ERROR_KINDS", "generate_world", "write_world", "summary_line", "solution_text", "noisy_solution",
    "check", "CheckResult", "CRITIQUE_STYLES", "apply_op", "corrected_solution",
]

SPLITS = ("pretrain", "train", "validation", "test")
ERROR_KINDS = ("arithmetic_slip", "wrong_operand", "wrong_operation", "skipped_step", "copy_error",
               "wrong_final")

NAMES = ["Mia", "Leo", "Ava", "Noah", "Zoe", "Omar", "Ines", "Ravi", "Lena", "Kofi", "Yuki", "Sam"]
ITEMS = ["apples", "marbles", "stamps", "coins", "books", "shells", "cards", "pencils", "stickers"]
PHRASES = {
    "+": ["buys {n} more", "finds {n} more", "gets {n} more from a friend", "picks up {n} more"],
    "-": ["gives away {n}", "loses {n}", "sells {n}", "uses {n}"],
    "*": ["ends up with {n} times as many"],
    "/": ["splits them into {n} equal piles and keeps one pile"],
}
SPECIAL_MULT = {2: "doubles them", 3: "triples them"}


def apply_op(op: str, a: int, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a // b if b else 0
    raise ValueError(op)


def _split_of(start: int, steps: list[tuple[str, int]], weights: dict[str, int]) -> str:
    key = f"{start}|" + "|".join(f"{op}{n}" for op, n in steps)
    bucket = int(hashlib.sha1(key.encode()).hexdigest(), 16) % sum(weights.values())
    for split, w in weights.items():
        if bucket < w:
            return split
        bucket -= w
    raise AssertionError("unreachable")


def _draw_problem(rng: random.Random, cfg: WorldConfig) -> tuple[int, list[tuple[str, int, str]]]:
    for _ in range(10_000):
        value = start = rng.randint(2, cfg.max_number)
        steps: list[tuple[str, int, str]] = []
        for _ in range(rng.randint(cfg.min_steps, cfg.max_steps)):
            options = []
            for op in cfg.operations:
                if op == "+":
                    n = rng.randint(1, cfg.max_number)
                    if value + n <= cfg.max_value:
                        options.append((op, n))
                elif op == "-" and value > 1:
                    options.append((op, rng.randint(1, min(value - 1, cfg.max_number))))
                elif op == "*":
                    n = rng.randint(2, cfg.max_factor)
                    if value * n <= cfg.max_value:
                        options.append((op, n))
                elif op == "/":
                    divisors = [d for d in range(2, cfg.max_factor + 1) if value % d == 0]
                    if divisors:
                        options.append((op, rng.choice(divisors)))
            if not options:
                break
            op, n = rng.choice(options)
            text = SPECIAL_MULT[n] if op == "*" and n in SPECIAL_MULT and rng.random() < 0.7 else (
                rng.choice(PHRASES[op]).format(n=n))
            steps.append((op, n, text))
            value = apply_op(op, value, n)
        if len(steps) >= cfg.min_steps:
            return start, steps
    raise UserError(f"world: no problem with {cfg.min_steps}+ steps fits operations={cfg.operations!r}, "
                    f"max_value={cfg.max_value}, max_number={cfg.max_number}, max_factor={cfg.max_factor}; "
                    "widen the ranges or lower world.min_steps")


def solution_text(start: int, steps: list[tuple[str, int]]) -> tuple[str, int]:
    lines, value = [], start
    for i, (op, n) in enumerate(steps, start=1):
        new = apply_op(op, value, n)
        lines.append(f"Step {i}: {value} {op} {n} = {new}")
        value = new
    lines.append(f"The answer is \\boxed{{{value}}}.")
    return "\n".join(lines), value


def generate_world(cfg: WorldConfig) -> dict[str, list[dict]]:
    """Deterministic problems for every split; splits are disjoint by construction."""
    wanted = {"pretrain": cfg.n_pretrain, "train": cfg.n_train, "validation": cfg.n_validation,
              "test": cfg.n_test}
    # Hash buckets: 1/20 test, 1/20 validation, 4/20 train, 14/20 pretrain.
    weights = {"test": 1, "validation": 1, "train": 4, "pretrain": 14}
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    seen: set[tuple] = set()
    rng = random.Random(cfg.seed)
    attempts, max_attempts = 0, 50 * max(1, sum(wanted.values()))
    while any(len(out[s]) < wanted[s] for s in SPLITS):
        attempts += 1
        if attempts > max_attempts:
            short = {s: f"{len(out[s])}/{wanted[s]}" for s in SPLITS}
            raise UserError(f"world: cannot draw enough distinct problems {short}; widen the ranges")
        start, steps = _draw_problem(rng, cfg)
        key = (start, tuple((op, n) for op, n, _ in steps))
        if key in seen:
            continue
        seen.add(key)
        split = _split_of(start, [(op, n) for op, n, _ in steps], weights)
        if len(out[split]) >= wanted[split]:
            continue
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        sentences = [f"{name} has {start} {item}."] + [f"Then {name} {text}." for _, _, text in steps]
        question = " ".join(sentences) + f" How many {item} does {name} have now?"
        solution, answer = solution_text(start, [(op, n) for op, n, _ in steps])
        pid = hashlib.sha1(repr(key).encode()).hexdigest()[:10]
        out[split].append({
            "id": f"world-{pid}", "split": split, "question": question, "answer": str(answer),
            "solution": solution, "start": start, "steps": [[op, n, text] for op, n, text in steps],
        })
    return out


def write_world(cfg: WorldConfig, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, int]:
    """The world's splits in `out_dir` (claimed first; a world of another config is replaced only
    with `overwrite`)."""
    world = generate_world(cfg)
    with output_dir(out_dir, "world", fingerprint=stable_hash(cfg.__dict__), overwrite=overwrite) as (out_dir, _):
        counts = {split: write_jsonl(out_dir / f"{split}.jsonl", rows) for split, rows in world.items()}
        write_json(out_dir / "manifest.json", {"stage": "world", "config": cfg.__dict__, "counts": counts})
        mark_complete(out_dir)
    return counts


def summary_line(counts: dict[str, int], out: str | Path) -> str:
    """`world`'s one-line summary: the rows of each split."""
    return f"wrote world to {out}: {counts}"


# ---------------------------------------------------------------------------------------------
# Noisy solutions


def _perturb(rng: random.Random, x: int) -> int:
    while True:
        y = x + rng.choice([-10, -3, -2, -1, 1, 2, 3, 10])
        if y != x and y >= 0:
            return y


def noisy_solution(problem: dict, rng: random.Random, kind: str | None = None,
                   step: int | None = None) -> tuple[str, dict]:
    """A solution with one injected error of `kind` at 1-based `step` (random when None).

    The error propagates: later steps compute correctly from the wrong value, as a student would.
    Returns (text, {"error": kind, "step": step}).
    """
    steps = [(op, n) for op, n, _ in problem["steps"]]
    kind = kind or rng.choice(ERROR_KINDS)
    if kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}; choose from {ERROR_KINDS}")
    k = (step - 1) if step is not None else rng.randrange(len(steps))
    lines, value, number = [], problem["start"], 0
    for i, (op, n) in enumerate(steps):
        if kind == "skipped_step" and i == k:
            continue
        a, o, b = value, op, n
        if i == k:
            if kind == "copy_error":
                a = _perturb(rng, value)
            elif kind == "wrong_operand":
                b = _perturb(rng, n) if op in "+-" else rng.choice([d for d in range(2, 6) if d != n])
            elif kind == "wrong_operation":
                o = {"+": "-", "-": "+", "*": "+", "/": "*"}[op]
        c = apply_op(o, a, b)
        if i == k and kind == "arithmetic_slip":
            c = _perturb(rng, c)
        number += 1
        lines.append(f"Step {number}: {a} {o} {b} = {c}")
        value = c
    final = _perturb(rng, value) if kind == "wrong_final" else value
    lines.append(f"The answer is \\boxed{{{final}}}.")
    return "\n".join(lines), {"error": kind, "step": k + 1}


# ---------------------------------------------------------------------------------------------
# The exact step checker

STEP_RE = re.compile(r"^Step\s+(\d+):\s*(-?\d+)\s*([-+*/])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")
BOXED_RE = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")


@dataclass
class CheckResult:
    correct: bool
    critique: str
    error_step: int | None = None   # 1-based step of the first error
    error_kind: str | None = None


@dataclass
class _Walk:
    """A solution walked against the true computation: its sound steps, then the first error."""
    truth: list[tuple[str, int, str]]    # (op, operand, phrase) of every step of the problem
    name: str
    steps: list[tuple[int, str, int, int]]  # the solution's steps up to the first error: (a, op, b, c)
    value: int                           # the true value after the sound steps
    # the first error: (1-based step, kind, why (terse), what the solution has there or None, why (short))
    error: tuple[int, str, str, str | None, str] | None = None


def _walk(problem: dict, solution: str) -> _Walk:
    truth = [(op, n, text) for op, n, text in problem["steps"]]
    w = _Walk(truth, problem["question"].split(" ", 1)[0], [], problem["start"])
    step_lines = [line.strip() for line in solution.splitlines() if line.strip().startswith("Step")]
    parsed = [STEP_RE.match(line) for line in step_lines]
    name, value = w.name, w.value
    for i, (op, n, text) in enumerate(truth):
        true_next = apply_op(op, value, n)
        right = f"{value} {op} {n} = {true_next}"
        if i >= len(parsed):
            w.error = (i + 1, "skipped_step", f"The solution stops before step {i + 1}: {name} {text}, which is "
                       f"{right}.", None, "the solution stops before this step")
            break
        m = parsed[i]
        if m is None:
            w.error = (i + 1, "unreadable", f"Step {i + 1} is not a calculation I can follow: "
                       f"{step_lines[i][:80]!r}. It should be {right}.",
                       None, f"the solution's step {i + 1} is not a calculation: {step_lines[i][:80]!r}")
            break
        a, o, b, c = int(m[2]), m[3], int(m[4]), int(m[5])
        has = f"{a} {o} {b} = {c}"
        if (o, b) != (op, n) and i + 1 < len(truth) and (o, b) == tuple(truth[i + 1][:2]) and a == value:
            w.error = (i + 1, "skipped_step", f"Step {i + 1} skips a step: first {name} {text}, which is {right}.",
                       has, "it skips this step")
        elif a != value:
            where = f"{name} starts with {value}" if i == 0 else f"step {i} gave {value}"
            w.error = (i + 1, "copy_error", f"Step {i + 1} starts from {a}, but {where}. It should be {right}.",
                       has, f"it starts from {a}, not {value}")
        elif o != op:
            w.error = (i + 1, "wrong_operation", f"Step {i + 1} uses {o}, but '{text}' means {op}. "
                       f"It should be {right}.", has, f"it uses {o}, not {op}")
        elif b != n:
            w.error = (i + 1, "wrong_operand", f"Step {i + 1} uses {b}, but '{text}' means {op} {n}. "
                       f"It should be {right}.", has, f"it uses {b}, not {n}")
        elif c != apply_op(o, a, b):
            w.error = (i + 1, "arithmetic_slip", f"Step {i + 1} has an arithmetic error: "
                       f"{a} {o} {b} = {apply_op(o, a, b)}, not {c}.", has, f"but {a} {o} {b} is {apply_op(o, a, b)}")
        if w.error:
            break
        w.steps.append((a, o, b, c))
        value = true_next
    w.value = value
    if w.error is None:
        boxed = BOXED_RE.findall(solution)
        k = len(truth) + 1
        if len(parsed) > len(truth):
            w.error = (k, "extra_step", f"Step {k} is not in the problem: after step {len(truth)} {name} has "
                       f"{value}.", None, f"the solution has a step {k}, which is not in the problem")
        elif not boxed:
            w.error = (k, "missing_answer", f"The steps give {value}, but the solution never states a final "
                       "answer in \\boxed{}.", None, "the solution never states a final answer in \\boxed{}")
        elif int(boxed[-1]) != value:
            w.error = (k, "wrong_final", f"The steps give {value}, but the final answer says {boxed[-1]}.",
                       boxed[-1], f"not {value}")
    return w


def _true_steps(problem: dict) -> list[tuple[int, str, int, int, str]]:
    """(value before, op, operand, value after, phrase) of every step of the true computation."""
    out, v = [], int(problem["start"])
    for op, n, text in problem["steps"]:
        out.append((v, op, n, apply_op(op, v, n), text))
        v = out[-1][3]
    return out


def _compared(w: _Walk, j: int, same: str, differs: str) -> str:
    """What the solution has at step j + 1 (len(truth): its final answer), copied before the
    judgement, so that the judgement compares two values already written."""
    if j < len(w.steps):
        a, o, b, c = w.steps[j]
        return f" The solution has {a} {o} {b} = {c}: {same}."
    if j == len(w.truth) and w.error is None:
        return f" The solution's is {w.value}: {same}."
    if w.error is None or w.error[0] != j + 1:
        return ""
    _, _, _, has, why = w.error
    if has is None:
        return f" But {why}: {differs}."
    if j < len(w.truth):
        return f" The solution has {has}, {why}: {differs}."
    return f" The solution's is {has}, {why}: {differs}."


def check(problem: dict, solution: str, style: str = "terse") -> CheckResult:
    """Walk `solution` against the true computation and critique it in `style` (CRITIQUE_STYLES):

    - `terse` (the paper's layout): each sound step is called correct, then the first error is
      named and the correct steps from there are given;
    - `recompute`: each step is first re-derived from the question (its phrase, the operation and
      operand it means, the value), and only then compared with the solution's step;
    - `solve_first`: the critic writes the whole solution first, then compares the candidate's
      steps and answer with its own.

    Every style ends `Conclusion: right [END]` or `Conclusion: wrong [END]` and, for a wrong
    solution, carries the correction."""
    return _render(problem, _walk(problem, solution), style)


def _render(problem: dict, w: _Walk, style: str) -> CheckResult:
    if style == "terse":
        out = [f"Step {i + 1}: {a} {o} {b} = {c} is correct." for i, (a, o, b, c) in enumerate(w.steps)]
        if w.error is None:
            out += [f"The final answer {w.value} is correct.", "Conclusion: right [END]"]
            return CheckResult(True, "\n".join(out))
        step, kind, why, _, _ = w.error
        out.append(why)
        if step <= len(w.truth):
            out.append("The correct steps from there:")
            out += [f"Step {j + 1}: {v} {op} {n} = {x}" for j, (v, op, n, x, _) in enumerate(_true_steps(problem))
                    if j + 1 >= step]
    elif style == "recompute":  # the step's value is written before the solution's is read
        out = []
        for j, (v, op, n, x, text) in enumerate(_true_steps(problem)):
            out.append(f"Step {j + 1}: '{text}' is {op} {n}, so {v} {op} {n} = {x}." + _compared(w, j, "correct",
                                                                                                "wrong"))
        if w.error is None or w.error[0] > len(w.truth):
            out.append(f"The final answer should be {problem['answer']}." + _compared(w, len(w.truth), "correct",
                                                                                      "wrong"))
    elif style == "solve_first":  # the critic's own solution first, then the candidate's against it
        out = ["My solution:"] + [f"Step {j + 1}: {v} {op} {n} = {x}" for j, (v, op, n, x, _) in
                                  enumerate(_true_steps(problem))]
        out.append(f"My answer is {problem['answer']}.")
        for j in range(min(len(w.steps) + 1, len(w.truth))):
            if j < len(w.steps) or w.error[0] == j + 1:
                out.append(f"Step {j + 1}:" + _compared(w, j, "matches", "does not match"))
        if w.error is None or w.error[0] > len(w.truth):
            out.append("The final answer:" + _compared(w, len(w.truth), "matches", "does not match"))
    else:
        raise ValueError(f"unknown critique style {style!r}; choose from {CRITIQUE_STYLES}")
    if w.error is None:
        return CheckResult(True, "\n".join(out + ["Conclusion: right [END]"]))
    step, kind, *_ = w.error
    out += [f"The correct answer is {problem['answer']}.", "Conclusion: wrong [END]"]
    return CheckResult(False, "\n".join(out), step, kind)


def corrected_solution(problem: dict, solution: str) -> str:
    """What the checker's critique of `solution` asks for, written out: the solution itself when
    every step and the final answer are right, else the corrected solution (its sound steps, the
    true steps from its first error on, and the true boxed answer). The checker teacher's refinement."""
    if _walk(problem, solution).error is None:
        return solution
    return solution_text(problem["start"], [(op, n) for op, n, _ in problem["steps"]])[0]


def mistaken_critique(problem: dict, solution: str, rng: random.Random, style: str = "terse") -> str:
    """A critique with the WRONG verdict, in the checker's style: a weak teacher for ablations.

    A wrong solution is waved through ("every step is correct"); a right one is accused of an
    arithmetic error in a random step. The style matches `check`, so only the content is worse.
    """
    steps = [STEP_RE.match(line.strip()) for line in solution.splitlines() if line.strip().startswith("Step")]
    steps = [m for m in steps if m]
    boxed = BOXED_RE.findall(solution)
    if style != "terse":  # the same mistakes, written in the style's layout
        truth, name = [tuple(t) for t in problem["steps"]], problem["question"].split(" ", 1)[0]
        parsed = [(int(m[2]), m[3], int(m[4]), int(m[5])) for m in steps][:len(truth)]
        if not check(problem, solution).correct:  # every step of the solution "correct"
            value = int(boxed[-1]) if boxed else (parsed[-1][3] if parsed else problem["start"])
            parsed += [(0, op, n, 0) for op, n, _ in truth[len(parsed):]]
            return _render(problem, _Walk(truth, name, parsed, value), style).critique
        k = rng.randrange(len(parsed)) if parsed else 0
        a, o, b, c = parsed[k] if parsed else (problem["start"], "+", 0, problem["start"])
        claimed = c + rng.choice([-2, -1, 1, 2])
        w = _Walk(truth, name, parsed[:k], problem["start"],
                  (k + 1, "arithmetic_slip", "", f"{a} {o} {b} = {c}", f"but {a} {o} {b} is {claimed}"))
        return _render(problem, w, style).critique.replace(f"The correct answer is {problem['answer']}.",
                                                           f"The correct answer is not {problem['answer']}.")
    if not check(problem, solution).correct:
        out = [f"Step {m[1]}: {m[2]} {m[3]} {m[4]} = {m[5]} is correct." for m in steps]
        out.append(f"The final answer {boxed[-1] if boxed else '?'} is correct.")
        return "\n".join(out + ["Conclusion: right [END]"])
    if not steps:
        return f"The final answer is not justified; the correct answer is not {problem['answer']}.\nConclusion: wrong [END]"
    m = rng.choice(steps)
    claimed = int(m[5]) + rng.choice([-2, -1, 1, 2])
    return (f"Step {m[1]} has an arithmetic error: {m[2]} {m[3]} {m[4]} = {claimed}, not {m[5]}.\n"
            "Conclusion: wrong [END]")
