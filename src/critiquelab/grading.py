"""Answer extraction and equivalence: a cheap exact/numeric path, then math-verify.

`extract_answer` takes the last `\\boxed{}` / `\\fbox{}` (nested braces), else "The answer is X",
GSM8K's `#### N`, `A: N`, and finally the last number (marked as a fallback). `grade` compares
with the reference after the normalisations math-verify lacks (text, units, thousands
separators, degrees, percent, `\\dfrac`, trailing `.0`, True/False), then asks math-verify for
symbolic equivalence under a time bound. Model output is parsed, never executed.

    critiquelab grade --responses graded.jsonl   # rows {response, reference}
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from critiquelab.sources import last_boxed

__all__ = ["Grade", "extract_answer", "extract", "normalize", "equivalent", "grade", "summary_line"]

TIMEOUT_S = 2


@dataclass
class Grade:
    correct: bool
    extracted: str | None
    reason: str            # exact | numeric | math_verify | mismatch | no_answer | no_reference | timeout
    fallback: bool = False  # the answer came from the last-number fallback


_NUM = r"-?\d[\d,]*(?:\.\d+)?"
_ANSWER_IS = re.compile(r"answer is[:\s]*\$?([^\n$]+?)\$?\s*(?:\.\s*)?$", re.IGNORECASE | re.MULTILINE)
_HASHES = re.compile(r"####\s*(" + _NUM + ")")
_A_COLON = re.compile(r"(?:^|\n)\s*A:\s*(" + _NUM + ")")
_LAST_NUM = re.compile(_NUM)


def extract(text: str) -> tuple[str | None, bool]:
    """(answer, is_fallback)."""
    if not text:
        return None, False
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed, False
    for pattern in (_ANSWER_IS, _HASHES, _A_COLON):
        found = pattern.findall(text)
        if found:
            return found[-1].strip(), False
    nums = _LAST_NUM.findall(text)
    return (nums[-1].rstrip(".,"), True) if nums else (None, False)


def extract_answer(text: str) -> str | None:
    return extract(text)[0]


_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_UNITS = re.compile(r"(?<=[\d}])\s*(?:\\[,;! ]|~)?\s*(?:cm|m|km|kg|g|mm|s|sec|seconds|minutes|hours|days|dollars|"
                    r"cents|units|degrees|meters|feet|inches|miles|mph|sq|square)\b\.?(\^?\d)?$")


def normalize(s: str) -> str:
    s = s.strip().strip("$").strip()
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("°", "").replace("\\%", "").replace("%", "")
    s = s.replace("\\$", "").replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    for _ in range(3):
        s = _TEXT.sub(r"\1", s)
    s = _UNITS.sub("", s).strip()
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    s = re.sub(r"^(-?\d+)\.0+$", r"\1", s)
    s = s.rstrip(".").strip()
    m = re.fullmatch(r"\(?([A-E])\)?", s)  # multiple choice: (C) == C
    if m:
        return m[1]
    low = s.lower()
    if low in ("true", "yes", "correct"):
        return "True"
    if low in ("false", "no", "incorrect"):
        return "False"
    return re.sub(r"\s+", "", s)


def _as_float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return latex_number(s)


_TOKEN = re.compile(r"\s*(\d+\.?\d*|\.\d+|\\frac|\\sqrt|\\pi|\\cdot|\\times|[-+*/^(){}\[\]])")


def latex_number(s: str) -> float | None:
    """Value of a purely numeric LaTeX expression (digits, + - * / ^, \\frac, \\sqrt, \\pi,
    implicit products such as 2\\sqrt{3}); None for anything else. Parsed, never evaluated as code."""
    pos, toks = 0, []
    s = s.replace("{,}", "")
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            return None if s[pos:].strip() else _finish(toks)
        toks.append(m[1])
        pos = m.end()
    return _finish(toks)


def _finish(toks: list[str]) -> float | None:
    import math

    i = 0

    def peek():
        return toks[i] if i < len(toks) else None

    def take(expected=None):
        nonlocal i
        t = peek()
        if t is None or (expected and t != expected):
            raise ValueError
        i += 1
        return t

    def expr():
        v = term()
        while peek() in ("+", "-"):
            v = v + term() if take() == "+" else v - term()
        return v

    def term():
        v = unary()
        while peek() in ("*", "/", "\\cdot", "\\times", "\\frac", "\\sqrt", "\\pi", "(", "{"):
            op = peek()
            if op in ("*", "\\cdot", "\\times"):
                take()
                v *= unary()
            elif op == "/":
                take()
                v /= unary()
            else:  # implicit product: 2\sqrt{3}, 3\pi, 2(1+x)
                v *= unary()
        return v

    def unary():
        if peek() == "-":
            take()
            return -unary()
        if peek() == "+":
            take()
            return unary()
        return power()

    def power():
        v = atom()
        if peek() == "^":
            take()
            e = unary() if peek() not in ("{", "(") else atom()
            if abs(e) > 64 or abs(v) > 1e12:
                raise ValueError
            v = v ** e
        return v

    def group(open_, close):
        take(open_)
        v = expr()
        take(close)
        return v

    def atom():
        t = peek()
        if t is None:
            raise ValueError
        if t[0].isdigit() or t[0] == ".":
            take()
            return float(t)
        if t == "\\pi":
            take()
            return math.pi
        if t == "\\frac":
            take()
            a = group("{", "}")
            b = group("{", "}")
            return a / b
        if t == "\\sqrt":
            take()
            n = group("[", "]") if peek() == "[" else 2.0
            x = group("{", "}") if peek() == "{" else atom()
            if x < 0:
                raise ValueError
            return x ** (1 / n)
        if t == "(":
            return group("(", ")")
        if t == "{":
            return group("{", "}")
        raise ValueError

    try:
        v = expr()
        if i != len(toks) or isinstance(v, complex):
            return None
        return float(v)
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None


_NEUTRAL = re.compile(r"\\(?:frac|sqrt|pi|cdot|times)")


def _symbolic(s: str) -> bool:
    """Holds symbols or several parts (letters, commas), and is no equation to solve for."""
    if "=" in s:
        return False
    rest = _NEUTRAL.sub("", s)
    return "," in rest or re.search(r"[A-Za-z]", rest) is not None


def _verify_here(a: str, b: str, timeout: int | None) -> bool | None:
    from math_verify import parse, verify

    try:
        gold = parse(f"${a}$", parsing_timeout=timeout)
        pred = parse(f"${b}$", parsing_timeout=timeout)
        if not gold or not pred:
            return False
        return bool(verify(gold, pred, timeout_seconds=timeout))
    except TimeoutError:
        return None
    except Exception:  # math-verify raises many sympy errors on odd input: not equivalent
        return False


_pool = None
_pool_lock = threading.Lock()


def _math_verify(a: str, b: str) -> bool | None:
    """math-verify on two answers, at most TIMEOUT_S; None on timeout.

    math-verify bounds itself with SIGALRM, which only works on the main thread. Off the main
    thread the call goes to a one-process worker pool (where it runs on that process's main
    thread) and is abandoned after TIMEOUT_S; a stuck worker is replaced.
    """
    global _pool
    if threading.current_thread() is threading.main_thread():
        return _verify_here(a, b, TIMEOUT_S)
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout
    from multiprocessing import get_context

    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
            _pool.submit(_verify_here, "1", "1", None).result(timeout=120)  # start-up is not grading time
        pool = _pool
    future = pool.submit(_verify_here, a, b, TIMEOUT_S)
    try:
        return future.result(timeout=TIMEOUT_S + 1)
    except FutureTimeout:
        with _pool_lock:
            if _pool is pool:
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.kill()
                pool.shutdown(wait=False, cancel_futures=True)
                _pool = None
        return None


def equivalent(reference: str, answer: str) -> tuple[bool, str]:
    ref, ans = normalize(reference), normalize(answer)
    if ref == ans:
        return True, "exact"
    fr, fa = _as_float(ref), _as_float(ans)
    if fr is not None and fa is not None:
        same = abs(fr - fa) <= 1e-6 * max(1.0, abs(fr))
        return same, "numeric" if same else "mismatch"
    if (fr is None) != (fa is None) and _symbolic(ans if fa is None else ref):
        return False, "mismatch"  # a number never equals a tuple, a list or an expression in symbols
    result = _math_verify(reference, answer)
    if result is None:
        return False, "timeout"
    return result, "math_verify" if result else "mismatch"


def grade(response: str, reference: str | None) -> Grade:
    answer, fallback = extract(response)
    if reference is None:
        return Grade(False, answer, "no_reference", fallback)
    if answer is None:
        return Grade(False, None, "no_answer")
    ok, reason = equivalent(reference, answer)
    return Grade(ok, answer, reason, fallback)


def summary_line(grades: list[Grade]) -> str:
    """`grade`'s one-line summary: how many responses were correct."""
    return f"{sum(g.correct for g in grades)}/{len(grades)} correct"
