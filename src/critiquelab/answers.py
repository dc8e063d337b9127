"""Answer types: what a benchmark's answers are, and how a response is graded against one.

- `math`: a final answer (boxed, "The answer is X", ..., else the fallback, `eval.answer_fallback`)
  compared by equivalence (grading.py).
- `choice`: an option letter. The answer the model gave last counts: a boxed letter
  (`\\boxed{C}`, `\\boxed{(C)}`, `\\boxed{\\text{C}}`), "the answer is (C)" / "Answer: C", a
  final line that is only the option (`C`, `(C)`, `**C.**`), or a letter in parentheses that
  the closing sentence gives after a verb ("Therefore, the correct statement is (B).", "... so
  the ratio is (D) 3 over 5.", "... is **<the option's text> (A)**."). A lower-case letter counts
  only in a box or in parentheses, so an article ("... is a bit subtle") is never option A.
  An option's text in the box (`\\boxed{\\frac{1}{4}}` where (A) is 1/4), or alone after "the
  answer is", counts as that option's letter when it matches exactly one option (the same text
  after normalisation, or the same number); such answers are marked `option_text` and counted
  with the format failures, right or wrong. lm-eval-harness's GPQA "flexible-extract" also maps
  an option's text to its letter; simple-evals' GPQA reads only "Answer: X" and scores anything
  else 0.
- `bbeh`: BIG-Bench Extra Hard's free-form answers (`Yes`, `(B)`, `[emma, lily]`, dates), taken
  from the last box or "the answer is: ..." and compared after BBEH's normalisation, written
  here: case, spaces after commas, a trailing period, markdown bold and quotes ignored; `(b)`
  equals `b`; equal numbers are equal; `[x]` equals `x`; a trailing `?` ignored; lists
  (`[a, b]`) compared item by item, in order.

A response with no answer (`no_answer`) or several different letters in its last answer
(`several_answers`) is a format failure, counted apart from wrong answers and never guessed
(no last-number or random-letter fallback outside `math`); an answer read from an option's text
(`option_text`) is graded, and counted with the format failures too. Model output is parsed,
never run.

    critiquelab eval --model M --benchmarks gpqa_diamond,bbeh_time_arithmetic
"""

from __future__ import annotations

import re

from critiquelab.grading import FALLBACK, Grade, grade
from critiquelab.sources import ANSWER_TYPES, LETTERS, braced, choice_letter

__all__ = ["ANSWER_TYPES", "FORMAT_FAILURES", "bbeh_equal", "extract_bbeh", "extract_choice", "grade_as", "read_choice"]

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
_ANSWER_IS = re.compile(r"\b(?:answer|choice|option)[ \t]*(?:is|:)[ \t]*:?[ \t]*(?:option[ \t]+)?", re.IGNORECASE)
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
    m = re.match(r"\(([A-Za-z])\)|([A-Z])(?![\w'])(?!\s*=)", s)  # "A = H3O+, B = HCl" names no option
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


def _final_line_option(text: str, letters: str, options: list[str] | None) -> str | None:
    """The last line when it is an option with its own text: `A) 1`, `(C) Red` (with the options known)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip(_STRIP)]
    m = re.fullmatch(r"\(?([A-Z])[).:]\s+(.+)", lines[-1].strip(_STRIP)) if lines and options else None
    return m[1] if m and m[1] in letters and _option_letter(m[2], letters, options) == m[1] else None


def _boxes(text: str) -> list[tuple[int, str]]:
    """(position, content) of every \\boxed{} / \\fbox{}, nested braces included."""
    found = ((m.start(), braced(text, m.end() - 1)) for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text))
    return [(pos, content) for pos, content in found if content is not None]


# a letter the closing sentence gives: "... is (B).", "... is (D) 3 over 5.", "... is **Sb (B)**."
_CLOSING_AFTER_VERB = re.compile(r"(?<![\w\\])(?:is|are|be|was|would\s+be|must\s+be|:)\s*(?:\*\*|\$|\\textbf\{)?\s*"
                                 r"\(([A-Z])\)")
_CLOSING_LAST = re.compile(r"(?<![\w\\])(?:is|are|be|was)\b(?P<text>[^()\n]{1,160}?)\(([A-Z])\)[\s*}$]*[.!]?[\s*]*$")
_PAREN_LETTER = re.compile(r"\([A-Z]\)")
_OR_ANOTHER = re.compile(r"\s*(?:,|and|or|&|/)\s*(?:\([A-Z]\)|[A-Z]\b)")
_NEGATED = re.compile(r"\b(?:not|n't|never|neither|nor)\b", re.IGNORECASE)


def _closing_letter(text: str, letters: str) -> tuple[int, str] | None:
    """(position, letter) that the text's closing sentence gives after a verb, or None."""
    tail = text.rstrip()
    cut = max(tail.rfind("\n"), *(tail.rfind(p, 0, len(tail) - 1) for p in (". ", "! ", "? ")))
    start = cut + 1 if cut >= 0 else 0
    sentence = tail[start:]
    if not _PAREN_LETTER.search(sentence):
        return None
    hits = [(m.start(1), SEVERAL if _OR_ANOTHER.match(sentence, m.end()) else m[1])
            for m in _CLOSING_AFTER_VERB.finditer(sentence)]
    m = _CLOSING_LAST.search(sentence)
    if m and not _NEGATED.search(m["text"]):
        hits.append((m.start(2), m[2]))
    hits = [(start + pos, letter) for pos, letter in hits if letter in letters or letter == SEVERAL]
    if not hits or len({letter for _, letter in hits}) > 1:
        return None  # no letter, or several different ones: not this rule's to decide
    return hits[-1]


def _loose(s: str) -> str:
    """An option's text with the ways of writing it set aside: `10^{-4} eV` = `10^-4 eV`,
    `6.3 \\times 10^{-7} M` = `6.3x10^-7 M`, `\\text{Red}` = `red`."""
    s = re.sub(r"\\(?:times|cdot)|[\u00d7*]", "x", s.lower())
    return re.sub(r"[\s{}$\\~]|text|mathrm", "", s)


def _option_letter(content: str, letters: str, options: list[str] | None) -> str | None:
    """The letter of the one option whose text `content` is (normalised, or the same number)."""
    if not options:
        return None
    from critiquelab.grading import _as_float, close, normalize

    mine = normalize(_unwrap(content)).lower()
    value, key = _as_float(mine), _loose(mine)
    same = set()
    for letter, option in zip(letters, options, strict=False):
        theirs = normalize(option).lower()
        if mine == theirs or key == _loose(theirs) or (value is not None and (v := _as_float(theirs)) is not None
                                                       and close(v, value)):
            same.add(letter)
    return same.pop() if len(same) == 1 else None


def read_choice(text: str, letters: str = LETTERS, options: list[str] | None = None) -> tuple[str | None, str, bool]:
    """(letter, failure, option_text): `extract_choice` and, when `options` (the options' texts in
    letter order) are given, an option's text in the last box, or alone after "the answer is",
    read as its letter (`option_text` True)."""
    if not text:
        return None, "no_answer", False
    last = _final_line_letter(text, letters) or _final_line_option(text, letters, options)
    if last:
        return last, "", False
    found = []  # (position, letter / SEVERAL / None, read from option text)
    for pos, content in _boxes(text):
        letter = _boxed_letter(content, letters)
        mapped = _option_letter(content, letters, options) if letter is None else None
        found.append((pos, letter or mapped, mapped is not None))
    for m in _ANSWER_IS.finditer(text):
        if v := _phrase_letter(text[m.end():], letters):
            found.append((m.start(), v, False))
        elif options and (v := _option_letter(text[m.end():].split("\n", 1)[0].rstrip(" .*"), letters, options)):
            found.append((m.start(), v, True))
    if closing := _closing_letter(text, letters):
        found.append((*closing, False))
    if not found:
        return None, "no_answer", False
    _, value, mapped = max(found, key=lambda f: f[0])
    if value is None:
        return None, "no_answer", False
    return (None, "several_answers", False) if value == SEVERAL else (value, "", mapped)


def extract_choice(text: str, letters: str = LETTERS) -> tuple[str | None, str]:
    """(letter, "") for the option the model gave last; (None, "no_answer" / "several_answers")
    when it gave none, or several at once. The last answer counts even when it is unreadable: a
    box of option text after an earlier "the answer is B" is no answer, not B (without the
    options' texts to match it against). An "answer is" that no option follows is prose, not an
    answer, and is passed over."""
    letter, failure, _ = read_choice(text, letters)
    return letter, failure


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


def grade_as(answer_type: str, response: str, reference: str | None, letters: str = LETTERS, *,
             options: list[str] | None = None, question: str | None = None, fallback: str = FALLBACK) -> Grade:
    """Grade `response` as `answer_type`; `math` is `grading.grade` itself (`question` and
    `fallback` go to it); `options`: a choice item's option texts in letter order."""
    if answer_type == "math":
        return grade(response, reference, question, fallback)
    mapped = False
    if answer_type == "choice":
        answer, failure, mapped = read_choice(response, letters, options)
    else:
        answer = extract_bbeh(response)
        failure = "" if answer is not None else "no_answer"
    if reference is None:
        return Grade(False, answer, "no_reference")
    if answer is None:
        return Grade(False, None, failure)
    ok = answer == choice_letter(reference) if answer_type == "choice" else bbeh_equal(reference, answer)
    return Grade(ok, answer, "exact" if ok else "mismatch", option_text=mapped)
