"""Answer extraction and equivalence: a cheap exact/numeric path, then math-verify.

`extract_answer` takes the last `\\boxed{}` / `\\fbox{}` (nested braces), else "The answer is X" /
"Final answer: X", GSM8K's `#### N`, `A: N`, and finally a fallback (marked as such, counted apart
in eval's results): `conclusion` (the default) reads a value only from the response's concluding
sentence, where a verb or `=` gives it ("so the speed is 12 pi inches per second", "Hence
$a+b=12$"), never from a sentence that restates the question, a list marker, a cut-off line, a
relation ("a multiple of 6") or a sentence naming several different values; `last_number` is the
old rule (the last number anywhere), kept to reproduce earlier numbers; `off` reads nothing.

`grade` compares with the reference after the normalisations math-verify lacks (text, units,
thousands separators, degrees and degrees-minutes-seconds, percent, `\\dfrac`, trailing `.0`,
True/False), with a relative tolerance at every magnitude (1e-6; an absolute floor only when the
reference is exactly 0), then asks math-verify for symbolic equivalence under a time bound, after
three rewrites of its input: a factor after a fraction or root is made explicit (`\\frac{1}{m}t`,
which math-verify reads as 1/m with a unit t, becomes `\\frac{1}{m}\\cdot{t}`), subscripted `E_k` /
`I_k` become plain symbols (math-verify reads E and I as e and the imaginary unit), and one
`\\pm` becomes its two values. A percentage written with its sign equals the fraction
(`62.5\\%` = `0.625`); a bare number is read as written (`62.5` is not `0.625`). Model output is
parsed, never executed.

    critiquelab grade --responses graded.jsonl   # rows {response, reference[, question]}
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from critiquelab.sources import braced, last_boxed

__all__ = ["FALLBACK", "FALLBACKS", "Grade", "conclusion_value", "extract_answer", "extract", "normalize",
           "equivalent", "grade", "summary_line"]

TIMEOUT_S = 2
FALLBACKS = ("conclusion", "last_number", "off")  # config.EvalConfig.answer_fallback names them
FALLBACK = "conclusion"  # measured on real outputs: benchmarks/grading_agreement.py, README "Grading real answers"


@dataclass
class Grade:
    correct: bool
    extracted: str | None
    reason: str            # exact | numeric | math_verify | mismatch | no_answer | no_reference | timeout
    fallback: bool = False  # the answer came from the fallback (no final-answer marker)
    option_text: bool = False  # choice: the answer was an option's text, mapped to its letter


_NUM = r"-?\d[\d,]*(?:\.\d+)?"
# the answer a phrase gives, to the end of its sentence ("... is 54. Wait, ..." stops at 54)
_ANSWER_IS = re.compile(r"(?:answer is|(?:correct|right) (?:option|choice) is|final answer:)[:\s*]*\$?([^\n$]+?)\$?\s*\**\s*"
                        r"(?:\.(?=\s)|\.?\s*$)", re.IGNORECASE | re.MULTILINE)
_HEADING = re.compile(r"^#+[ \t]*(?:final[ \t]+)?answer[ \t]*:?[ \t]*\n\s*\$?([^\n$]+?)\$?[ \t]*$",  # PRM800K's
                      re.IGNORECASE | re.MULTILINE)
_HASH_COLON = re.compile(r"^#+[ \t]*(?:final[ \t]+)?answer\b[ \t]*:?[ \t]*\$?([^\n$]+?)\$?[ \t]*$", re.I | re.M)
_EMPTY_HEADING = re.compile(r"\n[ \t]*#+[ \t]*(?:final[ \t]+)?(?:answer|conclusion)[ \t]*:?[ \t]*$", re.IGNORECASE)
# "our answer is correct" judges an answer, it gives none
_NOT_AN_ANSWER = re.compile(r"(?:correct|right|wrong|incorrect|indeed|valid|consistent|reasonable|confirmed|verified|"
                            r"not\b|also\b|the same|yes|no)\b", re.IGNORECASE)
_IS_OUR_ANSWER = re.compile(r"[,;]?\s*(?:and\s+)?(?:(?:that|this|which|it)\s+is|that's|this's|is|was)\s+"
                            r"(?:our|the|my)\s+(?:final\s+)?answer\b(?!\s+(?:is|to|of|for)\b)", re.IGNORECASE)
_HASHES = re.compile(r"####\s*(" + _NUM + ")")
_A_COLON = re.compile(r"(?:^|\n)\s*A:\s*(" + _NUM + ")")
_LAST_NUM = re.compile(_NUM)


def extract(text: str, question: str | None = None, fallback: str = FALLBACK) -> tuple[str | None, bool]:
    """(answer, is_fallback); `question` lets the fallback pass over sentences restating it."""
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback={fallback!r}: use one of {', '.join(FALLBACKS)}")
    if not text:
        return None, False
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed, False
    said = _stated(text)
    if said is not None:
        return said, False
    for pattern in (_HEADING, _HASH_COLON, _HASHES, _A_COLON):
        found = pattern.findall(text)
        if found and found[-1].strip():
            return found[-1].strip(), False
    if fallback == "off":
        return None, False
    if fallback == "last_number":
        nums = _LAST_NUM.findall(text)
        return (nums[-1].rstrip(".,"), True) if nums else (None, False)
    value = conclusion_value(text, question)
    return (value, True) if value is not None else (None, False)


def _stated(text: str) -> str | None:
    """The answer a phrase states, the last one given: "the answer is X", "Final answer: X", or X
    followed by "is our (final) answer" / "that is the answer" (X read as the fallback reads a
    conclusion, from the same line or, for "That is our answer." alone, the sentence before)."""
    found = [(m.start(), m[1].strip()) for m in _ANSWER_IS.finditer(text)
             if m[1].strip() and not _NOT_AN_ANSWER.match(m[1].strip())]
    for m in _IS_OUR_ANSWER.finditer(text):
        line_start = text.rfind("\n", 0, m.start()) + 1
        before = text[line_start:m.start()]
        value = _last_value(before) if _HAS_VALUE.search(before) else conclusion_value(text[:m.start()])
        if value is not None:
            found.append((m.start(), value))
    return max(found)[1] if found else None


def extract_answer(text: str, question: str | None = None, fallback: str = FALLBACK) -> str | None:
    return extract(text, question, fallback)[0]


# ---------------------------------------------------------------------------------------------
# the conclusion fallback: a value a concluding sentence gives, or nothing

# math segments; a `$` that a space follows or precedes is a price ("gets $5. Greg found $20"), not math
_SEG = re.compile(r"\$\$(.+?)\$\$|\$(?!\s)([^$]+?)(?<!\s)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_MARKER = re.compile(r"^[ \t]*(?:\d+[.)]|step\s*\d+\s*[:.)]|[-*\u2022]|#+)[ \t]+", re.IGNORECASE | re.MULTILINE)
_PLAIN = r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?"
_WORDS_10 = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
             "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
_NUMBER_WORD = {w: str(i) for i, w in enumerate(_WORDS_10) if w != "one"}  # "one" is as often a pronoun
_NUMBER_WORD.update({w: str(10 * i) for i, w in enumerate(("thirty", "forty", "fifty", "sixty", "seventy", "eighty",
                                                            "ninety"), start=3)})
_SPELLED = r"\b(?:" + "|".join(_NUMBER_WORD) + r")\b"
_ATOM = rf"(?:\x00\d+\x00|{_PLAIN}|{_SPELLED})"
_ITEM = rf"(?:\(\s*{_ATOM}(?:\s*,\s*{_ATOM})+\s*\)|(?:\(\s*)*{_ATOM}(?:\s*\))*)"  # (-1, 6), (-3), 12
_OP = r"(?:[-+*/=^\u00d7\u00f7]|\\times|\\cdot)"
# a value and the operations around it; never a digit that starts a longer term (7i, 2x, 5!, 10^{-3})
_RUN = re.compile(rf"{_ITEM}(?:\s*{_OP}\s*{_ITEM})*(?:\s*(?:\\?pi|\u03c0)\b)?(?![A-Za-z0-9_^!{{(]|\\(?!%))",
                  re.IGNORECASE)
_HAS_VALUE = re.compile(rf"\d|\x00|{_SPELLED}", re.IGNORECASE)
_VERB = re.compile(r"(?:(?<![\w\\])(?:is|are|was|were|be|equals?|becomes?|gives?|gets?|got|yields?|makes?|costs?|"
                   r"has|have|had|weighs?|takes?|needs?|earns?|pays?|spends?|spent|totals?|remains?|approaches|or|"
                   r"lead(?:s|ing)\s+to|giving|yielding|resulting\s+in)|[=:\u2248]|"
                   r"\\approx)(?:\s+(?:just|exactly|simply|then|now|still|therefore|thus|only|about|approximately|"
                   r"roughly|always|also|indeed|clearly|equal\s+to|a\s+total\s+of|given\s+by))*\s*\\?\$?\s*$",
                   re.IGNORECASE)
_RELATION = re.compile(r"\b(?:more|less|than|times|fewer|greater|smaller|larger|bigger|higher|lower|multiples?|"
                       r"factors?|divisors?|divisible|before|after|apart|away|ratio|out)\b", re.IGNORECASE)
_RELATION_BEFORE = re.compile(r"\b(?:multiples?|factors?|divisors?|divisible\s+by|more|less|fewer|greater|smaller|larger|"
                              r"than|times|out|at\s+(?:least|most)|up\s+to|except)(?:\s+(?:of|than|by))?(?:\s+(?:the|a|an))?"
                              r"\s*\\?\$?\s*$", re.IGNORECASE)
_TRAILING = re.compile(r",?\s+(?:which|since|because|where|when|if|that|who|given\s+that|assuming)\b", re.IGNORECASE)
_WHICH_IS = re.compile(r"\s+(?:is|equals?|gives|simplifies\s+to|makes)\s+(?:just\s+|exactly\s+|simply\s+)?(?:\x00|-?\d)")
_CLAUSE = re.compile(r"[;,]\s*(?:and\s+)?(?:so|thus|hence|therefore)\b|\s(?:so|thus|hence|therefore),?\s",
                     re.IGNORECASE)
_RESTATE = re.compile(r"^(?:(?:so|now|first|then|here),?\s+)?(?:we\s+(?:need|want|have)\s+to|we\s+are\s+(?:asked|told|"
                      r"given)|the\s+(?:problem|question)\s+(?:asks|says|states|tells|gives)|(?:let'?s|let\s+us)\s+"
                      r"(?:find|compute|calculate|determine|figure)|to\s+find|find|determine|compute|calculate|"
                      r"what\s+is|how\s+(?:many|much))\b", re.IGNORECASE)
_CUE = re.compile(r"^(?:(?:right|yes|ok(?:ay)?),?\s+)?(?:so|thus|hence|therefore|finally|in\s+(?:conclusion|total|all)|"
                  r"overall|altogether|this\s+means|that\s+means)\b", re.IGNORECASE)
_CONCLUDES = re.compile(r"^(?:so|thus|hence|therefore|finally|in\s+(?:conclusion|total|all)|overall|altogether|"
                        r"the\s+(?:final\s+)?(?:answer|result))\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z]{3,}")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def conclusion_value(text: str, question: str | None = None) -> str | None:
    """The value the response's concluding sentence gives, or None. Trailing sentences without a
    number (a closing remark) and sentences restating the question are passed over, two at most;
    a final line cut off before any number, a list marker ("5. Ines") and a value in a relation
    ("a multiple of 6", "3 more than") give nothing."""
    segs: list[str] = []

    def hold(m: re.Match) -> str:
        segs.append(next(g for g in m.groups() if g is not None).strip())
        return f"\x00{len(segs) - 1}\x00"

    text = _EMPTY_HEADING.sub("", text.rstrip())  # "# Answer" and nothing after it: no answer there
    body = _MARKER.sub("", _SEG.sub(hold, text).replace("**", ""))
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", body) if s.strip()]
    passed = 0
    for s in reversed(sentences):
        if passed > 2:
            return None
        if not _HAS_VALUE.search(s):
            if s[-1] not in ".!?" or len(s.split()) > 10:
                return None  # cut off, a last word that is no value, or a conclusion in words only
            passed += 1  # a closing remark: "That's our answer."
            continue
        if _restates(s, segs, question):
            passed += 1
            continue
        value = _slot_value(s, segs)
        if value is _NO_SLOT and s[-1] in ".!?":
            passed += 1  # a statement that concludes nothing ("Greg found $20 and split it ...", "a multiple of 6")
            continue
        return None if value is _NO_SLOT else value
    return None


def _last_value(text: str) -> str | None:
    """The last value written in `text` ("So $(a_1)^9=-1$" -> -1), for a phrase that names it the answer."""
    segs: list[str] = []

    def hold(m: re.Match) -> str:
        segs.append(next(g for g in m.groups() if g is not None).strip())
        return f"\x00{len(segs) - 1}\x00"

    runs = list(_RUN.finditer(_SEG.sub(hold, text).replace("**", "")))
    return _run_value(runs[-1][0], segs) or None if runs else None


def _numbers(sentence: str, segs: list[str]) -> set[str]:
    return set(_NUMBER.findall(re.sub(r"\x00(\d+)\x00", lambda m: f" {segs[int(m[1])]} ", sentence)))


def _anchored(number: str, sentence: str, question: str) -> bool:
    """`number` stands beside the same word in the sentence and in the question ("costs $400")."""
    def near(text: str) -> set[str]:
        words = set()
        for m in re.finditer(rf"(?<![\d.]){re.escape(number)}(?![\d]|\.\d)", text):
            before = re.findall(r"[a-z]+", text[max(0, m.start() - 30):m.start()].lower())
            after = re.findall(r"[a-z]+", text[m.end():m.end() + 30].lower())
            words |= set(before[-1:]) | set(after[:1])
        return words
    return bool(near(sentence) & near(question))


def _restates(sentence: str, segs: list[str], question: str | None) -> bool:
    """A question, an announcement of what is to be found, or (given the question, and with no
    "so" / "therefore" / ... in front) a sentence of two or more numbers, all from the question,
    whose words mostly come from it too: the givens said again."""
    s = sentence.strip()
    if s.endswith("?") or _RESTATE.match(s):
        return True
    if not question or _CONCLUDES.match(s):
        return False
    plain = re.sub(r"\x00(\d+)\x00", lambda m: f" {segs[int(m[1])]} ", s).lower()
    nums = set(_NUMBER.findall(plain))
    if not nums or not nums <= set(_NUMBER.findall(question)):
        return False
    if len(nums) == 1 and not _anchored(next(iter(nums)), plain, question):
        return False  # a conclusion may well name a number the question holds, just not as a given
    words = _WORD.findall(plain)
    asked = set(_WORD.findall(question.lower()))
    return len(words) >= 3 and sum(w in asked for w in words) >= 0.6 * len(words)


def _has_number(s: str, segs: list[str]) -> bool:
    """A digit or a spelled number in plain text or in a math segment ($a$ is a symbol, not a value)."""
    return bool(_HAS_VALUE.search(re.sub(r"\x00(\d+)\x00", lambda m: f" {segs[int(m[1])]} ", s)))


def _after_eq(s: str) -> str:
    """What follows the last top-level `=` or `\\approx` (the whole when there is none)."""
    s = s.replace("\\approx", "=").replace("\u2248", "=")
    depth, cut = 0, -1
    for i, ch in enumerate(s):
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        elif ch == "=" and depth == 0:
            cut = i
    return s[cut + 1:].strip() if cut >= 0 else s.strip()


def _run_value(run: str, segs: list[str]) -> str:
    value = _after_eq(re.sub(r"\x00(\d+)\x00", lambda m: "{" + segs[int(m[1])] + "}", run))
    if value.startswith("{") and braced(value, 0) is not None and len(braced(value, 0)) == len(value) - 2:
        value = _after_eq(value[1:-1])  # one math segment: what its last `=` gives
    value = re.sub(r"\s*(?:\\?pi|\u03c0)$", r"\\pi", value).rstrip(".,;: ")
    value = re.sub(_SPELLED, lambda m: _NUMBER_WORD[m[0].lower()], value, flags=re.IGNORECASE)
    return value.replace("\u00d7", "\\times ").replace("\u00f7", "/")


_NO_SLOT = object()  # a sentence where no value is concluded at all (not one that names several)


def _slot_value(sentence: str, segs: list[str]):
    """The value `sentence` concludes, None when what it concludes is unreadable (several values,
    a relation), _NO_SLOT when it concludes none."""
    s = sentence.rstrip(".!").strip()
    parts = _CLAUSE.split(s)
    cued = len(parts) > 1 and _HAS_VALUE.search(parts[-1]) is not None or _CUE.match(s) is not None
    s = parts[-1] if _HAS_VALUE.search(parts[-1]) else s  # "..., so the total is 8": the conclusion
    cut = next((m.start() for m in _TRAILING.finditer(s) if _has_number(s[:m.start()], segs)
                and not (m[0].rstrip().endswith("which") and _WHICH_IS.match(s, m.end()))), None)
    s = s[:cut] if cut is not None else s
    slots = []
    for m in _RUN.finditer(s):
        before = s[:m.start()]
        alone = not re.search(r"[A-Za-z]", before)  # the sentence is the value (and its unit)
        if alone or _VERB.search(before) or "=" in m[0] or any("=" in segs[int(k)] for k in
                                                            re.findall(r"\x00(\d+)\x00", m[0])):
            slots.append(m)
    slots = [m for m in slots if not _RELATION_BEFORE.search(s[:m.start()])]
    runs = [m for m in _RUN.finditer(s) if not _RELATION_BEFORE.search(s[:m.start()])]
    if not slots and cued and len(runs) == 1:
        slots = runs  # "So Mikka could order 28 different pizzas": a conclusion with one number in it
    if not slots:
        return _NO_SLOT
    m, tail = slots[-1], s[slots[-1].end():]
    if _has_number(tail, segs) or re.search(r"[,;]\s*\w", tail) or _RELATION.search(tail) or len(tail.split()) > 8:
        return None
    if len(slots) > 1 and re.fullmatch(r"\s*(?:,|and|,\s*and|&)\s*", s[slots[-2].end():m.start()]) and \
            _run_value(slots[-2][0], segs) != _run_value(m[0], segs):
        return None  # "$a=10$ and $b=2$": several values side by side, no one conclusion
    value = _run_value(m[0], segs)
    if "\x00" not in m[0] and "=" not in m[0] and len(re.findall(r"\d+(?:\.\d+)?", m[0].replace(",", ""))) > 1 \
            and re.search(r"\d\s*(?:[-+*\u00d7\u00f7^]|\\times|\\cdot)\s*\d", m[0]):
        return None  # "Step 2: 33 * 2" (cut off before "= 66"): an expression the response never worked out
    if "align" in value or "&" in value or value.count("(") != value.count(")"):
        return None  # a display of several lines, or a value cut out of a longer one
    if re.match(r"\s*(?:%|\\%|percent\b)", tail):
        value += "\\%"
    return value or None


_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_UNITS = re.compile(r"(?<=[\d}])\s*(?:\\[,;! ]|~)?\s*(?:cm|m|km|kg|g|mm|s|sec|seconds|minutes|hours|days|dollars|"
                    r"cents|units|degrees|meters|feet|inches|miles|mph|sq|square)\b\.?(\^?\d)?$")


_DEG = r"(?:\^\s*\{?\s*\\circ\s*\}?|\u00b0|\s*\\degree|\s*degrees?)"
_MIN = r"(?:'|\u2032|\^\s*\{?\s*\\prime\s*\}?|\s*(?:minutes?|arcmin))"
_SEC = r"(?:''|\"|\u2033|\^\s*\{?\s*\\prime\s*\\prime\s*\}?|\s*(?:seconds?|arcsec))"
_DMS = re.compile(rf"(\d+(?:\.\d+)?)\s*{_DEG}\s*,?\s*(\d+(?:\.\d+)?)\s*{_MIN}(?:\s*,?\s*(\d+(?:\.\d+)?)\s*{_SEC})?")


def _decimal_degrees(m: re.Match) -> str:
    return f"{float(m[1]) + float(m[2]) / 60 + float(m[3] or 0) / 3600:.12g}"


def normalize(s: str) -> str:
    s = s.strip().strip("$").strip()
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\left", "").replace("\\right", "")
    if "'" in s or "\\prime" in s or "\u2032" in s or "minute" in s:  # 30^\circ 15' 20'' -> 30.2555...
        s = _DMS.sub(_decimal_degrees, s)
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("°", "").replace("\\%", "").replace("%", "")
    s = s.replace("\\$", "").replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    for _ in range(3):
        s = _TEXT.sub(r"\1", s)
    s = re.sub(r"(?<=\d)\s*\^?\{?(?:st|nd|rd|th)\}?$", "", s)  # 12^{\mathrm{th}}, 3rd
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


_COMMAND_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox|operatorname)\s*\{[^{}]*\}|\\[A-Za-z]+")
# a factor written after a number, a fraction or a root: math-verify would drop it as a unit
_FACTOR = re.compile(r"(?<=[\d}])\s*(?:\*|\\cdot|\\times)?\s*(?<![\\A-Za-z])(?![eE][-+]?\d)([A-Za-z]{1,3}(?![A-Za-z{])(?:_\{[^{}]*\}|_[A-Za-z0-9])?)")
_SCIENTIFIC = re.compile(r"(?<=\d)[eE](?=[-+]?\d)")
_WORDS = frozenset({"and", "or", "to", "for", "of", "in", "at", "is", "all"})
_SUBSCRIPTED = re.compile(r"(?<![\\A-Za-z])([EeI])_")  # math-verify reads E / e as Euler's number, I as i
_PM = re.compile(r"\\(?:pm|mp)")


def _explicit_factor(s: str) -> str:
    def put(m: re.Match) -> str:
        return m[0] if m[1].lower() in _WORDS else "\\cdot{" + m[1] + "}"

    return _FACTOR.sub(put, s)


def _both_values(s: str) -> str:
    """`a \\pm b` as the two values `a+b, a-b` (`x = ...` kept on each); several signs, or a list,
    stay as they are."""
    if len(_PM.findall(s)) != 1 or "," in s:
        return s
    lhs, _, rhs = s.rpartition("=") if re.match(r"^\s*[A-Za-z](?:_\{?\w+\}?)?\s*=", s) else ("", "", s)
    lhs = f"{lhs.strip()} = " if lhs else ""
    plus, minus = (_PM.sub(sign, rhs, count=1) for sign in (("+", "-") if "\\pm" in rhs else ("-", "+")))
    return f"{lhs}{plus}, {lhs}{minus}"


def _for_math_verify(reference: str, answer: str) -> tuple[str, str]:
    """The pair as math-verify should see it: a factor after a number, fraction or root made
    explicit when the reference has symbols of its own (`\\frac{1}{m}t` -> `\\frac{1}{m}\\cdot{t}`;
    with a numeric reference trailing letters stay units), `E_k` / `e_k` / `I_k` renamed to symbols
    math-verify keeps apart (`\\varepsilon_k`, `i_k`), one `\\pm` written as its two values."""
    out = []
    symbolic = re.search(r"[A-Za-z]", _SCIENTIFIC.sub("", _COMMAND_TEXT.sub("", reference))) is not None
    for s in (reference, answer):
        if symbolic and re.search(r"[\d}]\s*(?:\*|\\cdot|\\times)?\s*[A-Za-z]", s):
            s = _explicit_factor(s)
        if "_" in s:
            s = _SUBSCRIPTED.sub(lambda m: "i_" if m[1] == "I" else "\\varepsilon_", s)
        if "\\pm" in s or "\\mp" in s:
            s = _both_values(s)
        out.append(s)
    return out[0], out[1]


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


REL_TOL = 1e-6  # numbers agree to 1e-6 of the reference at every magnitude (1.39e-10 is not 9.99e-10)
ZERO_TOL = 1e-12  # the absolute floor, used only when the reference is exactly 0
_PERCENT = re.compile(r"%|\\text\{\s*percent\s*\}|\bpercent\b")
_ASSIGNED = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?=([^=]+)$")  # x=5, E_1=1.39\times10^{-10}


def _named_value(s: str) -> str | None:
    """The right side of `name = value` when the left names something (no digits outside its
    subscripts, nothing but one `=`): `x = 5`, `E_1 = 2C`, `f(x) = x+1`, `\\langle E\\rangle = ...`."""
    parts = s.split("=")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip() or s.count("\\") and "\\begin" in s:
        return None
    if re.search(r"\d", re.sub(r"_\{[^{}]*\}|_\w", "", parts[0])) or re.search(r"[<>]|\\[lg]eq?\b", parts[0]):
        return None
    return parts[1].strip()


def close(reference: float, value: float) -> bool:
    if reference == 0:
        return abs(value) <= ZERO_TOL
    return abs(reference - value) <= REL_TOL * abs(reference)


def equivalent(reference: str, answer: str) -> tuple[bool, str]:
    if "=" in answer and "=" not in reference and (side := _named_value(answer)) is not None:
        answer = side  # "\\langle E \\rangle = \\frac{E_1+2E_2}{3}" against the expression: its value
    ref, ans = normalize(reference), normalize(answer)
    if ref == ans:
        return True, "exact"
    fr, fa = _as_float(ref), _as_float(ans)
    if (fr is None) != (fa is None) and (m := _ASSIGNED.match(ans if fa is None else ref)):
        # "E = 2.5e-10" against 2.5e-10: compared as numbers, not after math-verify's rounding to 6 places
        fr, fa = (fr, _as_float(m[1])) if fa is None else (_as_float(m[1]), fa)
    if fr is not None and fa is not None:
        same = close(fr, fa)
        if not same and (_PERCENT.search(reference) is None) != (_PERCENT.search(answer) is None):
            same = close(fr / 100, fa) if _PERCENT.search(reference) else close(fr, fa / 100)  # 62.5\% = 0.625
        return same, "numeric" if same else "mismatch"
    if (fr is None) != (fa is None) and _symbolic(ans if fa is None else ref):
        return False, "mismatch"  # a number never equals a tuple, a list or an expression in symbols
    result = _math_verify(*_for_math_verify(reference, answer))
    if result is None:
        return False, "timeout"
    return result, "math_verify" if result else "mismatch"


def grade(response: str, reference: str | None, question: str | None = None, fallback: str = FALLBACK) -> Grade:
    """`response` graded against `reference`; `question` (when known) keeps the fallback off
    sentences that restate it; `fallback`: one of FALLBACKS."""
    answer, by_fallback = extract(response, question, fallback)
    if reference is None:
        return Grade(False, answer, "no_reference", by_fallback)
    if answer is None:
        return Grade(False, None, "no_answer")
    ok, reason = equivalent(reference, answer)
    return Grade(ok, answer, reason, by_fallback)


def summary_line(grades: list[Grade]) -> str:
    """`grade`'s one-line summary: how many responses were correct, and how many answers the
    fallback read (and of those, how many were right)."""
    read = [g for g in grades if g.fallback]
    extra = f" ({len(read)} read by the fallback, {sum(g.correct for g in read)} of them correct)" if read else ""
    return f"{sum(g.correct for g in grades)}/{len(grades)} correct{extra}"
