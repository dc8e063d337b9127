"""Answer types: what a benchmark's answers are, and how a response is graded against one.

- `math`: a final answer (boxed, "The answer is X", ...) compared by equivalence (grading.py,
  unchanged: published results depend on it).
- `choice`: an option letter. The answer the model gave last counts: a boxed letter
  (`\\boxed{C}`, `\\boxed{(C)}`, `\\boxed{\\text{C}}`), "the answer is (C)" / "Answer: C", or a
  final line that is only the option (`C`, `(C)`, `**C.**`). A lower-case letter counts only
  in a box or in parentheses, so an article ("... is a bit subtle") is never option A.
- `bbeh`: BIG-Bench Extra Hard's free-form answers (`Yes`, `(B)`, `[emma, lily]`, dates), taken
  from the last box or "the answer is: ..." and compared after BBEH's normalisation, written
  here: case, spaces after commas, a trailing period, markdown bold and quotes ignored; `(b)`
  equals `b`; equal numbers are equal; `[x]` equals `x`; a trailing `?` ignored; lists
  (`[a, b]`) compared item by item, in order.

A response with no answer (`no_answer`) or several different letters in its last answer
(`several_answers`) is a format failure, counted apart from wrong answers and never guessed
(no last-number or random-letter fallback outside `math`). Model output is parsed, never run.

    critiquelab eval --model M --benchmarks gpqa_diamond,bbeh_time_arithmetic
"""

from __future__ import annotations

import re

from critiquelab.grading import Grade, grade
from critiquelab.sources import ANSWER_TYPES, LETTERS, braced, choice_letter

__all__ = ["ANSWER_TYPES", "FORMAT_FAILURES", "bbeh_equal", "extract_bbeh", "extract_choice", "grade_as"]

FORMAT_FAILURES = ("no_answer", "several_answers")  # reasons that are not wrong answers but unreadable ones

SEVERAL = "several"

# ---------------------------------------------------------------------------------------------
# choice

_WRAP = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|mbox)\{(.*)\}$")
_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\{([^{}]*)\}")
# C, C., C:, C) 10^-4 eV, (C), (C) 10^-4 eV: a box holds one option, maybe with its text
_LETTER_IN_BOX = re.compile(r"\(([A-Za-z])\)(?:\s.*)?|([A-Za-z])(?:[.:)](?:\s.*)?)?", re.DOTALL)
_OPTION = r"(?:\([A-Za-z]\)|[A-Z])"
_JOINED = re.compile(rf"{_OPTION}(?:\s*(?:,|and|or|&|/)\s*{_OPTION})+")
_ANSWER_IS = re.compile(r"\b(?:answer|choice|option)\s*(?:is|:)\s*:?\s*(?:option\s+)?", re.IGNORECASE)
_STRIP = "*$#_ \t`"


def _unwrap(s: str) -> str:
    s = s.strip().strip("$").strip()
    for _ in range(3):
        m = _WRAP.match(s)
        if not m:
            break
        s = m[1].strip()
    return s.strip(_STRIP)


def _boxed_letter(content: str, letters: str) -> str | None:
    """A box's option letter (any case: a box is no sentence), SEVERAL, or None when it holds none."""
    s = _unwrap(content)
    if _JOINED.fullmatch(s.rstrip(".")):
        return SEVERAL
    m = _LETTER_IN_BOX.fullmatch(s)
    letter = (m[1] or m[2]).upper() if m else None
    return letter if letter and letter in letters else None


def _phrase_letter(rest: str, letters: str) -> str | None:
    """The option right after "the answer is": `C`, `(C)`, `**C**`, `(c)`; SEVERAL for `A or C`
    (alone on the rest of its line); None for anything else ("the answer is a bit subtle")."""
    s = _TEXT.sub(r"\1", rest.split("\n", 1)[0]).lstrip(_STRIP + ":")
    if _JOINED.fullmatch(s.rstrip(_STRIP + ".")):
        return SEVERAL
    m = re.match(r"\(([A-Za-z])\)|([A-Z])(?![\w'])", s)
    letter = (m[1] or m[2]).upper() if m else None
    return letter if letter and letter in letters else None


def _final_line_letter(text: str, letters: str) -> str | None:
    """The last line when it is only an option: `C`, `C.`, `(C)`, `**(C)**`."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip(_STRIP)]
    if not lines:
        return None
    m = re.fullmatch(r"\(([A-Za-z])\)\.?|([A-Z])[.)]?", lines[-1].strip(_STRIP))
    letter = (m[1] or m[2]).upper() if m else None
    return letter if letter and letter in letters else None


def _boxes(text: str) -> list[tuple[int, str]]:
    """(position, content) of every \\boxed{} / \\fbox{}, nested braces included."""
    found = ((m.start(), braced(text, m.end() - 1)) for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text))
    return [(pos, content) for pos, content in found if content is not None]


def extract_choice(text: str, letters: str = LETTERS) -> tuple[str | None, str]:
    """(letter, "") for the option the model gave last; (None, "no_answer" / "several_answers")
    when it gave none, or several at once. The last answer counts even when it is unreadable: a
    box of option text after an earlier "the answer is B" is no answer, not B. An "answer is"
    that no option follows is prose, not an answer, and is passed over."""
    if not text:
        return None, "no_answer"
    last = _final_line_letter(text, letters)
    if last:
        return last, ""
    found = [(pos, _boxed_letter(c, letters)) for pos, c in _boxes(text)]
    found += [(m.start(), v) for m in _ANSWER_IS.finditer(text) if (v := _phrase_letter(text[m.end():], letters))]
    if not found:
        return None, "no_answer"
    value = max(found, key=lambda f: f[0])[1]
    if value is None:
        return None, "no_answer"
    return (None, "several_answers") if value == SEVERAL else (value, "")


# ---------------------------------------------------------------------------------------------
# bbeh

_BBEH_PREFIX = re.compile(r"(?:the\s+)?(?:final\s+)?answer\s+is\s*:?", re.IGNORECASE)


def extract_bbeh(text: str) -> str | None:
    """The last boxed answer, else what follows the last "the answer is" on its line."""
    if not text:
        return None
    boxes = _boxes(text)
    phrases = list(_BBEH_PREFIX.finditer(text))
    if phrases and (not boxes or phrases[-1].start() > boxes[-1][0]):
        rest = text[phrases[-1].end():].split("\n", 1)[0]
        inner = _boxes(rest)
        answer = _unwrap(inner[-1][1]) if inner else _unwrap(rest).rstrip(".").strip()
        return answer or None
    return (_unwrap(boxes[-1][1]) or None) if boxes else None


def _bbeh_norm(s: str) -> str:
    s = _unwrap(s).lower().replace("**", "").strip().rstrip(".").strip()
    s = re.sub(r"\s*,\s*", ",", s)
    return s.replace("'", "").replace('"', "")


def _as_list(s: str) -> list[str] | None:
    return [x.strip() for x in s[1:-1].split(",")] if s.startswith("[") and s.endswith("]") else None


def bbeh_equal(reference: str, answer: str) -> bool:
    ref, ans = _bbeh_norm(reference), _bbeh_norm(answer)
    if ref == ans or ans.endswith("?") and ans[:-1] == ref:
        return True
    for a, b in ((ref, ans), (ans, ref)):
        if re.fullmatch(r"\([a-z]\)", a) and b == a[1]:
            return True
        if a == f"[{b}]":
            return True
    la, lb = _as_list(ref), _as_list(ans)
    if la is not None and lb is not None:
        return la == lb
    try:
        return float(ref) == float(ans)
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# one entry point


def grade_as(answer_type: str, response: str, reference: str | None, letters: str = LETTERS) -> Grade:
    """Grade `response` as `answer_type`; `math` is `grading.grade` itself."""
    if answer_type == "math":
        return grade(response, reference)
    if answer_type == "choice":
        answer, failure = extract_choice(response, letters)
    else:
        answer = extract_bbeh(response)
        failure = "" if answer is not None else "no_answer"
    if reference is None:
        return Grade(False, answer, "no_reference")
    if answer is None:
        return Grade(False, None, failure)
    ok = answer == choice_letter(reference) if answer_type == "choice" else bbeh_equal(reference, answer)
    return Grade(ok, answer, "exact" if ok else "mismatch")
