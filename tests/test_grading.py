"""Table-driven grading cases in the answer styles of the real benchmarks."""

import threading

import pytest

from critiquelab.grading import equivalent, extract, extract_answer, grade

# (reference, model answer, equivalent?)
EQUIV = [
    # integers, decimals, thousands separators, trailing .0 (GSM8K, AMC23, AIME24)
    ("27", "27", True), ("27.0", "27", True), ("27", "27.00", True), ("1000", "1,000", True),
    ("18000", "18,000", True), ("1234567", "1,234,567", True), ("5", "05", True), ("27", "28", False),
    ("0.5", "\\frac{1}{2}", True), ("0.5", "1/2", True), ("3.14", "3.14159", False), ("-4", "-4.0", True),
    ("-4", "4", False), ("100", "1000", False),
    # fractions and \dfrac (MATH)
    ("\\frac{14}{3}", "\\dfrac{14}{3}", True), ("\\frac{14}{3}", "\\tfrac{14}{3}", True),
    ("\\frac{14}{3}", "14/3", True), ("\\frac{1}{3}", "0.3333333", True), ("\\frac{1}{3}", "0.33", False), ("\\frac{3}{4}", "\\frac{6}{8}", True),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", True), ("\\frac{2}{3}", "\\frac{3}{2}", False),
    # radicals, pi, symbolic (MATH, OlympiadBench)
    ("2\\sqrt{2}", "\\sqrt{8}", True), ("3\\pi", "3\\pi", True), ("\\pi/2", "\\frac{\\pi}{2}", True),
    ("2\\sqrt{5}", "2\\sqrt{3}", False), ("x^2+2x+1", "(x+1)^2", True), ("2x+3", "3+2x", True),
    ("x^2-1", "(x-1)(x+1)", True), ("x+1", "x-1", False), ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", True),
    # units, \text{}, degrees, percent, dollars (MATH, Minerva, GSM8K)
    ("5", "5 \\text{ cm}", True), ("10", "\\text{10}", True), ("30", "30^\\circ", True), ("30", "30^{\\circ}", True),
    ("45", "45°", True), ("20", "20\\%", True), ("20", "20%", True), ("18", "\\$18", True), ("18", "18 dollars", True),
    ("12", "12 \\text{ inches}", True), ("7", "7\\text{ days}", True), ("90", "80^\\circ", False),
    ("\\text{(A)}", "A", True), ("\\text{(A)}", "(B)", False), ("5", "\\mbox{5}", True),
    # intervals, tuples, sets, multiple answers (MATH, OlympiadBench)
    ("(3, \\frac{\\pi}{2})", "\\left(3, \\frac{\\pi}{2}\\right)", True), ("(1,2)", "(1, 2)", True),
    ("(1,2)", "(2,1)", False), ("[0, 1)", "[0,1)", True), ("[0,1)", "[0,1]", False),
    ("(-\\infty, 2]", "(-\\infty,2]", True), ("1, 2", "2, 1", True), ("1, 2", "1, 3", False),
    ("\\{1, 2\\}", "\\{2, 1\\}", True),
    # True/False and words (TheoremQA)
    ("True", "true", True), ("True", "\\text{True}", True), ("False", "false", True), ("True", "False", False),
    ("True", "yes", True), ("False", "No", True),
    # scientific notation, negatives, mixed (Minerva, TheoremQA)
    ("1.5e3", "1500", True), ("6.02 \\times 10^{23}", "6.02\\times10^{23}", True), ("-0.25", "-\\frac{1}{4}", True),
    ("2.5", "5/2", True), ("3", "3.0001", False),
    # matrices and equations
    ("y = 2x + 1", "y=2x+1", True), ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
]


@pytest.mark.parametrize(("reference", "answer", "expected"), EQUIV)
def test_equivalence_table(reference, answer, expected):
    ok, reason = equivalent(reference, answer)
    assert ok is expected, (reference, answer, reason)


def test_table_is_large_enough():
    assert len(EQUIV) >= 60


EXTRACT = [
    ("so the result is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}", False),
    ("\\boxed{1} then \\boxed{x^{2}+\\frac{a}{b}}", "x^{2}+\\frac{a}{b}", False),
    ("answer: \\fbox{42}", "42", False),
    ("Therefore, the answer is 17.", "17", False),
    ("The answer is: $\\frac{3}{4}$", "\\frac{3}{4}", False),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips\n#### 72", "72", False),
    ("Q: ...\nA: 35", "35", False),
    ("We get 12 apples and then 15 more", None, False),  # a relation, cut off: the fallback reads nothing
    ("We get 12 apples and then 15 more, so she has 27 apples.", "27", True),
    ("no numbers here", None, False),
]


@pytest.mark.parametrize(("text", "answer", "fallback"), EXTRACT)
def test_extraction(text, answer, fallback):
    assert extract(text) == (answer, fallback)
    assert extract_answer(text) == answer


def test_grade_records_reasons():
    assert grade("I give up", "3").reason == "no_answer"
    g = grade("so \\boxed{3}", None)
    assert not g.correct and g.reason == "no_reference"
    g = grade("thus \\boxed{\\dfrac{1}{2}}", "0.5")
    assert g.correct and g.extracted == "\\dfrac{1}{2}"
    assert grade("The total is 7 apples.", "7").fallback
    assert extract("We get 12 apples and then 15 more", fallback="last_number") == ("15", True)  # the old rule
    assert extract("The total is 7 apples.", fallback="off") == (None, False)


def test_model_output_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"\\boxed{{__import__('os').system('touch {marker}')}}"
    assert not grade(evil, "0").correct
    assert not marker.exists()


def test_grading_off_the_main_thread_is_bounded_and_correct():
    out = {}

    def work():
        out["a"] = grade("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{1}{2}\\sqrt{3}").correct
        out["b"] = grade("\\boxed{x^2+2x+1}", "(x+1)^2").correct

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive() and out == {"a": True, "b": True}


@pytest.mark.parametrize(("latex", "value"), [
    ("2\\sqrt{2}", 2 * 2 ** 0.5), ("\\frac{\\sqrt{3}}{2}", 3 ** 0.5 / 2), ("-\\frac{1}{4}", -0.25),
    ("6.02\\times10^{23}", 6.02e23), ("\\sqrt[3]{8}", 2.0), ("2^{10}", 1024.0), ("(1+2)\\cdot 3", 9.0),
    ("(1,2)", None), ("x+1", None), ("1/0", None), ("2 3", None), ("9^9^9", None), ("\\sqrt{-1}", None),
])
def test_numeric_latex_fast_path(latex, value):
    from critiquelab.grading import latex_number

    got = latex_number(latex)
    assert got == pytest.approx(value) if value is not None else got is None
