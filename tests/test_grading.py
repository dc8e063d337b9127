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


# ---------------------------------------------------------------------------------------------
# Issue 34: misreadings found in real models' answers. Every case below is written as a model
# writes it, against a real benchmark reference, and each one was graded wrongly by the grader
# before the issue (cf35938): benchmarks/grading_agreement.py has the full labelled set.

# 1. tiny numbers: a relative tolerance at every magnitude (Minerva-Math, TheoremQA physics)
TINY = [
    ("For BCC Mo, 4r = \\sqrt{3}a with a = 3.15 \\AA, so r = 1.36 \\AA.\n\n$\\boxed{1.36 \\times 10^{-10}}$ m",
     "1.39e-10", False),
    ("The metallic radius is about an angstrom: \\boxed{9.99 \\times 10^{-10}}", "1.39e-10", False),
    ("\\lambda = h/p, so \\boxed{3.88 \\times 10^{-10}}", "3.89e-10", False),
    ("Using the electron mass by mistake... \\boxed{7.4 \\times 10^{-11}}", "7.4e-12", False),
    ("So \\lambda = \\boxed{5.89\\times10^{-9}} m.", "5.89e-7", False),
    ("\\Delta p \\approx \\boxed{3\\times 10^{-34}} kg m/s", "3e-36", False),
    ("q = \\epsilon_0\\Phi, so q = \\boxed{3.54 \\times 10^{-9}} C.", "3.54e-07", False),
    ("The energy difference is $3.4 \\times 10^{-10}$ J, so the answer is $3.4 \\times 10^{-10}$.", "3.3e-10", False),
]


@pytest.mark.parametrize(("text", "reference", "expected"), TINY)
def test_tiny_numbers_differ_by_their_size(text, reference, expected):
    assert grade(text, reference).correct is expected


def test_tolerance_is_relative_with_a_floor_only_at_zero():
    assert equivalent("3.4e-10", "3.4\\times10^{-10}")[0] and equivalent("5.89e-7", "589 \\times 10^{-9}")[0]
    assert equivalent("0", "0.0")[0] and not equivalent("0", "1e-9")[0]
    assert equivalent("\\frac{1}{3}", "0.3333333")[0] and not equivalent("1e-20", "1.1e-20")[0]


# 2. a factor written after a fraction or a root (OlympiadBench, Minerva-Math)
FACTOR = [
    ("Following the same pattern, the answer is $\\boxed{\\frac{1}{2}ab}$.", "\\frac{a b}{2}", True),
    ("Hence q is half the product: \\boxed{\\frac{1}{2}\\cdot a b}", "\\frac{a b}{2}", True),
    ("So $q=\\sqrt{\\frac{1}{4}}ab$, i.e. \\boxed{\\sqrt{\\frac{1}{4}}ab}", "\\frac{a b}{2}", True),
    ("\\boxed{\\frac{1}{\\sqrt{4}}ab}", "\\frac{a b}{2}", True),
    ("The speed is \\boxed{\\frac{1}{m}t}", "\\frac{t}{m}", True),
    ("\\boxed{\\frac{1}{\\sqrt{2}}c}", "\\frac{c}{\\sqrt{2}}", True),
    ("\\boxed{\\sqrt{2}c}", "c\\sqrt{2}", True),
]


@pytest.mark.parametrize(("text", "reference", "expected"), FACTOR)
def test_a_factor_after_a_fraction_or_root_counts(text, reference, expected):
    assert grade(text, reference).correct is expected


# 3. notations: subscripted capitals, swapped sides, \pm, degrees-minutes-seconds, percent
NOTATION = [
    ("A single measurement returns an eigen-energy: either \\boxed{E_1, E_2}", "E_{1},E_{2}", True),
    ("The possible results are \\boxed{E_{2},E_{1}}", "E_{1},E_{2}", True),
    ("\\langle E\\rangle = \\boxed{\\frac{E_1+2E_2}{3}}", "\\frac{1}{3} E_{1}+\\frac{2}{3} E_{2}", True),
    ("\\boxed{\\frac{2}{3}E_2+\\frac{1}{3}E_1}", "\\frac{1}{3} E_{1}+\\frac{2}{3} E_{2}", True),
    ("So \\boxed{E_2 = 2E_1}", "E_1 = 2E_2", False),  # before: E read as e, both sides as 2
    ("\\boxed{I_1 = 2I_2}", "I_{2}=2 I_{1}", False),  # before: I read as the imaginary unit
    ("Energy is conserved, so \\boxed{E_i = E_f}", "E_f = E_i", True),
    ("Writing it as an equation: \\boxed{\\langle E \\rangle = \\frac{1}{3}E_1 + \\frac{2}{3}E_2}",
     "\\frac{1}{3} E_{1}+\\frac{2}{3} E_{2}", True),
    ("By the quadratic formula, \\boxed{\\frac{2\\pm\\sqrt{76}}{2}}", "1 \\pm \\sqrt{19}", True),
    ("\\boxed{\\frac{6 \\pm 4\\sqrt{2}}{2}}", "3 \\pm 2 \\sqrt{2}", True),
    ("\\boxed{x = \\frac{-1 \\pm \\sqrt{5}}{2}}", "\\frac{-1+\\sqrt{5}}{2}, \\frac{-1-\\sqrt{5}}{2}", True),
    ("sin(critical) = 1/1.5, so the critical angle is \\boxed{41^\\circ 48'}", "41.8", True),
    ("\\theta = \\boxed{28^\\circ 42.6'}", "28.71", True),
    ("x = \\arcsin(\\cos 15^\\circ / 3) = \\boxed{18^\\circ 48'}", "18.8^{\\circ}", True),
    ("The angle of refraction is \\boxed{7^{\\circ} 6'}", "7.1", True),
    ("P = 0.125/0.2 = \\boxed{0.625}", "62.5%", True),
    ("The mixture is \\boxed{0.175} acid.", "17.5%", True),
    ("(1 + 0.18/4)^4 - 1 = \\boxed{19.25\\%}", "0.1925", True),
]


@pytest.mark.parametrize(("text", "reference", "expected"), NOTATION)
def test_notations_real_answers_use(text, reference, expected):
    assert grade(text, reference).correct is expected


def test_a_bare_number_is_no_percentage():
    """The decision for a percentage reference: 62.5 equals 0.625 only when one side writes the
    percent sign; a bare 0.548 answers "what percentage" with a fraction, read as written."""
    assert not grade("The fraction of the original intensity is \\boxed{0.548}", "54.8").correct
    assert grade("\\boxed{54.8\\%}", "54.8").correct and grade("\\boxed{0.625}", "62.5%").correct
    assert not grade("\\boxed{0.0625}", "62.5%").correct


# 4. the fallback (no final-answer marker): never an answer the response does not conclude
FALLBACK_CASES = [
    # (response, reference, correct, reason)
    ("The roots of z^4 + z^2 + 1 are primitive 6th and 3rd roots of unity. Any n that works must contain every order "
     "that occurs.\nTherefore, the number must be a multiple of 6.", "6", False, "no_answer"),
    ("From \\sin A = 2\\cos A we get \\sin A = 2/\\sqrt{5} and \\cos A = 1/\\sqrt{5}. So the ratio is $1/\\sqrt{2}$.",
     "2", False, "mismatch"),
    ("The product reduces to 24. Solving the congruence the other way round I get x = -7/3.", "3", False, "mismatch"),
    ("Ethan saves 20% of $400, which is $80. So his wallpaper costs $400 - $80 = $320. That is less than the market "
     "price of $400.", "320", True, "exact"),
    ("Greg and his 3 siblings share the money.\n1. Greg has $20.\n2. There are 4 people.\n3. Each person gets an equal "
     "share.\n4. Split the money:\n5. Ines", "5", False, "no_answer"),
    ("There are 4 people in total, so each of them gets 20 / 4 = $5. How much money did each of his 3 siblings get?",
     "5", True, "exact"),
    ("There are 4 people in total, so each of them gets 20 / 4 = $5. Greg found $20 and split it with his 3 younger "
     "siblings.", "5", True, "exact"),
    ("We get 12 apples and then 15 more", "15", False, "no_answer"),
    ("Vince was 7 two years ago. We need to find how old Vince is now, 2 years later.", "2", False, "no_answer"),
]


@pytest.mark.parametrize(("text", "reference", "correct", "reason"), FALLBACK_CASES)
def test_the_fallback_reads_only_a_conclusion(text, reference, correct, reason):
    g = grade(text, reference)
    assert (g.correct, g.reason) == (correct, reason), g


@pytest.mark.parametrize("text", ["Step 1: 14 + 19 = 33\nStep 2: 33 * 2", "Step 1: 22 - 3 = 19\nStep 2: 19 - 8 =",
                                  "Step 1: 21 - 4 = 17\nStep 2: 17 - 12 = 5\nThe an"])
def test_a_cut_off_world_solution_has_no_answer(text):
    """Cut off by max_new_tokens: an expression never worked out, or the final line begun, is no
    answer (the fallback never computes one for the model, nor guesses the last step's value)."""
    assert extract(text) == (None, False)


def test_the_fallback_passes_over_a_restated_question():
    question = ("A hand-painted wallpaper costs $400 at the market. A DIY will saves 20% after considering the materials "
                "cost. If Ethan made his own hand-painted wallpaper, how much was the total cost?")
    text = "20% of 400 is 80, so the DIY wallpaper costs 400 - 80 = 320 dollars.\nThe wallpaper at the market costs $400."
    assert grade(text, "320", question).correct and grade(text, "320", question).fallback
    assert not grade(text, "320").correct  # without the question the given is taken for the conclusion


def test_the_fallback_can_be_the_old_rule_or_off():
    text = "Therefore, the number must be a multiple of 6."
    assert grade(text, "6", fallback="last_number").correct  # the old rule's invented answer
    assert grade(text, "6", fallback="off").reason == "no_answer"
    assert grade("So she has 27 apples.", "27", fallback="off").reason == "no_answer"
    with pytest.raises(ValueError, match="fallback"):
        grade(text, "6", fallback="sometimes")


# 7. a change of mind: the last answer counts (math too)
def test_the_last_stated_answer_counts():
    assert grade("Timothy has 54 pens, so the answer is 54. Wait, the question asks about Sarah: she has 27 pens, so "
                 "the answer is 27.", "27").correct
    assert grade("\\boxed{44}\nThat is only the fish sausages; in all he bought 38 + 44 = 82, \\boxed{82}.", "82").correct
    assert not grade("12 * 35 + 20 * 3 = 480, so the answer is 480.\nHmm, the drivers count too, so the answer is 512.",
                     "480").correct
