"""Answer types beyond math: choice letters and BBEH answers from real-looking outputs, gold
self-consistency on every row of the new benchmarks, and eval through a served stand-in."""

import json

import pytest

from critiquelab.answers import extract_bbeh, extract_choice, grade_as
from critiquelab.config import EvalConfig
from critiquelab.sources import ANSWER_TYPES, BENCHMARKS, benchmarks_dir, load_benchmark

# (model output, letter or None, failure reason)
CHOICE = [
    # boxed letters, in the ways models write them
    ("The energy difference must exceed 3.3e-7 eV, so the answer is \\boxed{A}.", "A", ""),
    ("Therefore: $\\boxed{(C)}$", "C", ""),
    ("\\boxed{\\text{D}}", "D", ""),
    ("\\boxed{\\textbf{(b)}}", "B", ""),
    ("Final answer: \\boxed{C) 10^-4 eV}", "C", ""),
    # "the answer is" phrasings
    ("Comparing the lifetimes, the answer is (C).", "C", ""),
    ("The correct answer is B because the others violate parity.", "B", ""),
    ("**Answer:** D", "D", ""),
    ("The final answer is: **(A)**", "A", ""),
    ("So the correct option is (d).", "D", ""),
    # a final standalone option
    ("Option B over-counts the states; option D is right.\n\nD", "D", ""),
    ("Reasoning...\n**(B)**", "B", ""),
    # the answer given last wins
    ("At first I thought the answer is A.\nOn reflection, \\boxed{C}", "C", ""),
    ("\\boxed{B} was my guess; checking again, the answer is (D).", "D", ""),
    # lowercase articles are never options
    ("The answer is a bit subtle: it depends on the solvent.", None, "no_answer"),
    ("a", None, "no_answer"),
    ("The answer is a", None, "no_answer"),
    ("Thus the reaction yields a racemic mixture.\nThe answer is a mixture.", None, "no_answer"),
    # several letters at once: a format failure, never a guess
    ("The answer is A or C.", None, "several_answers"),
    ("\\boxed{A, C}", None, "several_answers"),
    ("The answer is (B) and (D)", None, "several_answers"),
    ("The answer is A, B is wrong.", "A", ""),  # one answer, then prose
    # none
    ("I am not sure about this one.", None, "no_answer"),
    ("", None, "no_answer"),
    ("The answer is E.", None, "no_answer"),  # not one of the four options
    ("the answer is B.\n\\boxed{10^{-4} eV}", None, "no_answer"),  # the last answer is option text, not B
]


@pytest.mark.parametrize(("text", "letter", "reason"), CHOICE)
def test_choice_extraction(text, letter, reason):
    assert extract_choice(text, "ABCD") == (letter, reason)


def test_choice_grading_counts_format_failures_apart():
    assert grade_as("choice", "so \\boxed{B}", "B").correct
    g = grade_as("choice", "so \\boxed{B}", "C")
    assert not g.correct and g.reason == "mismatch" and g.extracted == "B"
    assert grade_as("choice", "The answer is A or B", "A").reason == "several_answers"
    assert grade_as("choice", "no idea", "A").reason == "no_answer"
    assert grade_as("choice", "\\boxed{B}", None).reason == "no_reference"


# (reference, model output, correct?)
BBEH = [
    ("Yes", "Most people would say yes.\nThe answer is: Yes", True),
    ("No", "\\boxed{\\text{No}}", True),
    ("Ambiguous", "\\boxed{ambiguous}", True),
    ("Ambiguous", "\\boxed{No}", False),
    ("(B)", "\\boxed{B}", True),
    ("(B)", "\\boxed{(b)}", True),
    ("(B)", "\\boxed{(C)}", False),
    ("[emma, lily]", "\\boxed{[Emma, Lily]}", True),
    ("[emma, lily]", "\\boxed{emma,lily}", True),
    ("[emma, lily]", "\\boxed{[lily, emma]}", False),  # an ordered list
    ("[thursday]", "\\boxed{thursday}", True),
    ("[]", "\\boxed{[]}", True),
    ("unanswerable", "The answer is unanswerable.", True),
    ("same_day, 15:00:22", "\\boxed{same_day, 15:00:22}", True),
    ("0, 16, 55, 0", "\\boxed{0,16,55,0}", True),
    ("07-27-2002", "\\boxed{07-27-2002}", True),
    ("07-27-2002", "\\boxed{07-28-2002}", False),
    ("3", "The answer is 3.0", True),
]


@pytest.mark.parametrize(("reference", "text", "expected"), BBEH)
def test_bbeh_grading(reference, text, expected):
    g = grade_as("bbeh", text, reference)
    assert g.correct is expected, (reference, text, g)


def test_bbeh_without_an_answer_is_a_format_failure():
    assert extract_bbeh("Let me think about who caused it.") is None
    assert grade_as("bbeh", "Let me think.", "Yes").reason == "no_answer"
    assert extract_bbeh("\\boxed{No}, on reflection the answer is: Yes") == "Yes"  # the last one given


def test_math_is_grading_grade_and_keeps_its_record_fields():
    from critiquelab.evaluate import _graded, summarize
    from critiquelab.grading import grade

    for text, ref in [("so \\boxed{\\frac{1}{2}}", "0.5"), ("The total is 7 apples.", "7"), ("nothing", "3")]:
        assert grade_as("math", text, ref) == grade(text, ref)
    row = _graded({"id": "q", "question": "?", "answer": "7"}, "The total is 7 apples.")
    assert list(row) == ["id", "reference", "response", "extracted", "correct", "reason", "fallback"]
    assert row["fallback"] and row["correct"]
    # the published keys, and how many of the fallback's answers were right
    assert list(summarize([row])) == ["accuracy", "n", "correct", "ci95", "no_answer", "fallback", "fallback_correct"]


def test_answer_types_are_the_ones_config_allows():
    from dataclasses import fields

    (f,) = [f for f in fields(EvalConfig) if f.name == "answer_type"]
    assert f.metadata["one_of"] == ANSWER_TYPES


NEW = [b for b, spec in BENCHMARKS.items() if spec.answer_type != "math"]
needs_data = pytest.mark.skipif(not (benchmarks_dir() / "gpqa_diamond").is_dir(),
                                reason="../shared/benchmarks is not on this machine")


def gold(row: dict, prompt: str) -> str:
    """The reference in the answer format the prompt asks for."""
    if row["answer_type"] == "choice" and prompt == "official":
        return f"Looking at the choices, the answer is ({row['answer']})."
    return f"So the final answer is \\boxed{{{row['answer']}}}."


@needs_data
@pytest.mark.parametrize("prompt", ["boxed", "official"])
@pytest.mark.parametrize("name", NEW)
def test_gold_answers_grade_right_on_every_row(name, prompt):
    rows = load_benchmark(name, choice_permutations=2, choice_prompt=prompt)
    expected = {"gpqa_diamond": 2 * 198, "bbeh_causal_understanding": 200, "bbeh_disambiguation_qa": 120,
                "bbeh_time_arithmetic": 200}[name]
    assert len(rows) == expected
    for r in rows:
        assert grade_as(r["answer_type"], gold(r, prompt), r["answer"], r.get("letters", "ABCD")).correct, r["id"]
    if rows[0]["answer_type"] == "choice":  # and another option is wrong
        for r in rows:
            other = "ABCD"[("ABCD".index(r["answer"]) + 1) % 4]
            assert not grade_as("choice", f"\\boxed{{{other}}}", r["answer"], r["letters"]).correct


@needs_data
def test_gpqa_permutations_are_seeded_per_item_and_balanced():
    a = load_benchmark("gpqa_diamond", choice_permutations=4)
    b = load_benchmark("gpqa_diamond", choice_permutations=4)
    assert a == b  # deterministic
    first = [r for r in a if r["question_id"] == a[0]["question_id"]]
    assert [r["permutation"] for r in first] == [0, 1, 2, 3] and len({r["question"] for r in first}) > 1
    share = {x: sum(r["answer"] == x for r in a) / len(a) for x in "ABCD"}
    assert all(0.18 < s < 0.32 for s in share.values()), share
    official = load_benchmark("gpqa_diamond", choice_prompt="official", limit=1)[0]["question"]
    assert "\n\nAnswer Choices: (A) " in official and "boxed" not in official
    assert load_benchmark("gpqa_diamond", limit=3, choice_permutations=2)[-1]["permutation"] == 1


@needs_data
def test_eval_on_the_new_benchmarks_through_a_served_model(tmp_path):
    """`eval` with backend=openai against a stand-in that answers with the gold letter or answer
    (one item of each benchmark answered with no answer): accuracy, format failures, permutations."""
    from critiquelab.cli import main
    from tests.servers import FaultProxy

    names = ["gpqa_diamond", "bbeh_disambiguation_qa", "bbeh_time_arithmetic"]
    rows = [r for n in names for r in load_benchmark(n, limit=4, choice_permutations=2)]
    by_question = {r["question"]: r for r in rows}
    unanswered = {rows[0]["id"], "bbeh_time_arithmetic-0"}  # the first GPQA item under its first order

    def reply(req):
        r = by_question[req["messages"][-1]["content"]]
        return "I cannot tell." if r["id"] in unanswered else f"So \\boxed{{{r['answer']}}}"

    out = tmp_path / "eval"
    with FaultProxy(None, reply=reply) as proxy:
        assert main(["eval", "--model", "served", "--out", str(out), "--benchmarks", ",".join(names), "--limit", "4",
                     "eval.backend=openai", f"eval.base_url={proxy.url}/v1", "eval.choice_permutations=2"]) == 0
    res = json.loads((out / "results.json").read_text())["benchmarks"]
    gpqa = res["gpqa_diamond"]
    assert gpqa["n"] == 8 and gpqa["questions"] == 4 and gpqa["answer_type"] == "choice"
    assert gpqa["format_failures"] == 1 and gpqa["no_answer"] == 1 and gpqa["accuracy"] == 7 / 8
    assert gpqa["permutations"]["k"] == 2 and gpqa["permutations"]["accuracy"] == [3 / 4, 1.0]
    assert res["bbeh_disambiguation_qa"]["accuracy"] == 1.0 and res["bbeh_disambiguation_qa"]["format_failures"] == 0
    assert res["bbeh_time_arithmetic"]["format_failures"] == 1 and res["bbeh_time_arithmetic"]["accuracy"] == 3 / 4
    assert "several answers" in (out / "results.md").read_text()


@needs_data
def test_an_experiment_lists_the_new_benchmarks_and_refuses_a_type_that_does_not_fit():
    from critiquelab.config import RunConfig, load_config
    from critiquelab.grid import plan_experiment
    from critiquelab.io import UserError

    new = "eval.benchmarks=[gpqa_diamond,bbeh_causal_understanding,bbeh_disambiguation_qa,bbeh_time_arithmetic]"
    base = ["seeds=[0]", "build.methods=[cft]", "critic.n_problems=0", "eval.choice_permutations=2"]
    plan_experiment(load_config(RunConfig, None, [*base, new]), offline=True)  # no error
    with pytest.raises(UserError, match="eval.answer_type=bbeh does not fit benchmark 'gpqa_diamond'"):
        plan_experiment(load_config(RunConfig, None, [*base, new, "eval.answer_type=bbeh"]), offline=True)


def test_the_report_shows_format_failures_of_the_new_benchmarks(tmp_path):
    from critiquelab.cli import main
    from critiquelab.io import write_jsonl

    run = tmp_path / "run"
    (run / "eval" / "base").mkdir(parents=True)
    gpqa = {"accuracy": 0.5, "n": 4, "correct": 2, "ci95": [0.15, 0.85], "no_answer": 1, "fallback": 0,
            "answer_type": "choice", "several_answers": 1, "format_failures": 2}
    (run / "eval" / "base" / "results.json").write_text(json.dumps({"benchmarks": {"gpqa_diamond": gpqa}}))
    write_jsonl(run / "eval" / "base" / "gpqa_diamond.jsonl",
                [{"id": f"g{i}-p0", "correct": c} for i, c in enumerate([True, True, False, False])])
    assert main(["report", str(run)]) == 0
    (r,) = json.loads((run / "report.json").read_text())["runs"]
    assert r["benchmark"] == "gpqa_diamond" and r["format_failures"] == 2
    md = (run / "report.md").read_text()
    assert "format failures gpqa_diamond (%)" in md and "50.0" in md


def _parquet(path, rows):
    import datasets

    path.mkdir(parents=True)
    datasets.Dataset.from_list(rows).to_parquet(str(path / "test.parquet"))
    return path


def test_hub_benchmarks_read_a_local_dataset_with_a_field_mapping(tmp_path):
    rows = [{"qid": f"q{i}", "prompt": f"Which is prime? ({i})", "options": ["4", "6", "7", "9"], "label": 2}
            for i in range(3)]
    data = _parquet(tmp_path / "mc", rows)
    got = load_benchmark(f"hf:{data}:test", answer_type="choice",
                         hf_fields={"id": "qid", "question": "prompt", "choices": "options", "answer": "label"})
    assert [r["answer"] for r in got] == ["C"] * 3 and got[0]["letters"] == "ABCD"
    assert "(C) 7" in got[0]["question"] and "\\boxed{X}" in got[0]["question"] and got[0]["id"].endswith("-q0")
    assert grade_as("choice", "so \\boxed{C}", got[0]["answer"], got[0]["letters"]).correct
    maths = _parquet(tmp_path / "m", [{"question": "1+1?", "answer": 2.0}])
    (m,) = load_benchmark(f"hf:{maths}")  # default split test, default columns, math
    assert m["answer"] == "2" and "answer_type" not in m


def test_hub_benchmarks_refuse_what_does_not_fit(tmp_path):
    from critiquelab.io import UserError

    data = _parquet(tmp_path / "d", [{"question": "1+1?", "answer": "2"}])
    with pytest.raises(UserError, match="answer '2' is not an option letter"):
        load_benchmark(f"hf:{data}", answer_type="choice")
    with pytest.raises(UserError, match="missing column 'problem'"):
        load_benchmark(f"hf:{data}", hf_fields={"question": "problem"})
    with pytest.raises(UserError, match="unknown split|cannot load"):
        load_benchmark(f"hf:{data}:validation")


def test_a_hub_benchmark_offline_is_one_line(tmp_path, monkeypatch, capsys):
    from critiquelab.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "e"
    assert main(["eval", "--model", "served", "--out", str(out), "--benchmarks", "hf:critiquelab-test/no-such-set",
                 "eval.backend=openai", "eval.base_url=http://127.0.0.1:9/v1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not loadable offline (HF_HUB_OFFLINE=1)" in err and not out.exists()


# Issue 34, kind 5: the letter a closing sentence gives, after a verb (each was no_answer before)
CLOSING = [
    ("PFA+DSG fixes protein-protein contacts, and the peaks that vanish are artefacts at open chromatin. Therefore, "
     "the correct statement is (B).", "B", ""),
    ("The two periods give a ratio of 3:5 for the radii, so the ratio is (D) 3 over 5.", "D", ""),
    ("Antimony sits below arsenic in group 15. The symbol is (B) Sb.", "B", ""),
    ("Classical electrodynamics has the divergent self-energy of a point charge. The theory that never needs it is "
     "**Superstring Theory (A)**.", "A", ""),
    ("An ester, a vinyl group and the ring give 6 degrees of unsaturation, so the formula is **C11H12O2 (C)**.", "C", ""),
    ("Normalising, the particle is found between x=1 and x=3 with a = 0.85, so the value of a would be (B) 0.85.", "B", ""),
    ("Product 3 therefore has 11 carbon atoms, which is (D).", "D", ""),
    ("It is heading from the cytosol to the extracellular space, option (C).", "C", ""),
    ("After the alkylations E has a symmetric skeleton. So the number of signals is (B) or (D).", None,
     "several_answers"),
]


@pytest.mark.parametrize(("text", "letter", "reason"), CLOSING)
def test_a_closing_sentence_gives_its_letter(text, letter, reason):
    assert extract_choice(text, "ABCD") == (letter, reason)


@pytest.mark.parametrize("text", [
    "Metathesis gives several products. Option (A) is ruled out because ethene is not counted.",
    "The coupling has negative mass dimension, so the answer is not (B).",
    "Option (C) is incorrect because the spin is wrong.",
    "We compare (A) with (C) first.",
])
def test_a_letter_the_closing_sentence_does_not_give_is_no_answer(text):
    assert extract_choice(text, "ABCD") == (None, "no_answer")


# kind 6: an option's text instead of its letter: read as that option when it matches exactly one,
# marked option_text (counted with the format failures); lm-eval-harness's flexible-extract also
# maps option text to its letter, simple-evals' GPQA scores it 0
OPTIONS = ["\\frac{1}{4}", "1/2", "6.3x10^-7 M", "Superstring Theory"]


@pytest.mark.parametrize(("text", "letter"), [
    ("So the probability is \\boxed{\\frac{1}{4}}", "A"), ("\\boxed{0.25}", "A"), ("\\boxed{\\dfrac{1}{2}}", "B"),
    ("[Ca2+] = sqrt(0.02 / 5e10) = \\boxed{6.3 \\times 10^{-7}\\text{ M}}", "C"),
    ("\\boxed{\\text{Superstring Theory}}", "D"), ("Only one is finite at all energies. The answer is superstring theory.", "D"),
])
def test_option_text_reads_as_its_letter(text, letter):
    g = grade_as("choice", text, letter, "ABCD", options=OPTIONS)
    assert g.correct and g.extracted == letter and g.option_text


def test_option_text_that_matches_no_option_or_several_is_no_answer():
    assert grade_as("choice", "\\boxed{4}", "A", "ABCD", options=OPTIONS).reason == "no_answer"
    twice = grade_as("choice", "\\boxed{3}", "A", "ABCD", options=["3", "3.0", "4", "5"])
    assert twice.reason == "no_answer" and not twice.option_text
    wrong = grade_as("choice", "\\boxed{1/2}", "A", "ABCD", options=OPTIONS)
    assert not wrong.correct and wrong.extracted == "B" and wrong.option_text
    assert grade_as("choice", "\\boxed{0.25}", "A", "ABCD").reason == "no_answer"  # no options known: unread


def test_option_text_is_counted_with_the_format_failures():
    from critiquelab.evaluate import _graded, summarize

    row = {"id": "q-p0", "question": "?", "answer": "A", "answer_type": "choice", "letters": "ABCD", "options": OPTIONS}
    items = [_graded(row, "\\boxed{\\frac{1}{4}}"), _graded(row, "\\boxed{A}"), _graded(row, "no idea")]
    assert [r["option_text"] for r in items] == [True, False, False]
    s = summarize(items)
    assert (s["correct"], s["option_text"], s["no_answer"], s["format_failures"]) == (2, 1, 1, 2)


# kind 7: a change of mind: the last answer counts
@pytest.mark.parametrize(("text", "letter"), [
    ("At first sight the peaks are random, so the answer is (A). Hmm, wait: PFA alone fixes DNA-protein contacts. "
     "Therefore, the answer is (D).", "D"),
    ("\\boxed{D}\n\nOn reflection QED needs renormalization too; the answer is (C).", "C"),
    ("So the answer is (A). But I used the wrong temperatures; redoing the ratio, it is (D) ~12.6.", "D"),
    ("The answer is (C).\nActually no: checking the sign again, the answer is (B).", "B"),
])
def test_after_a_change_of_mind_the_last_answer_counts(text, letter):
    assert extract_choice(text, "ABCD") == (letter, "")


def test_the_fallback_setting_is_validated_like_the_others():
    from dataclasses import fields

    from critiquelab.config import ConfigError
    from critiquelab.grading import FALLBACK, FALLBACKS

    (f,) = [f for f in fields(EvalConfig) if f.name == "answer_fallback"]
    assert f.metadata["one_of"] == FALLBACKS and f.default == FALLBACK
    assert EvalConfig(answer_fallback="off").answer_fallback == "off"
    with pytest.raises(ConfigError, match="answer_fallback='sometimes': use one of conclusion, last_number, off"):
        EvalConfig(answer_fallback="sometimes")


def test_the_summary_line_counts_the_fallback_apart():
    from critiquelab.evaluate import _graded, summarize, summary_line

    row = {"id": "q", "question": "How many?", "answer": "7"}
    items = [_graded(row, "So she has 7 apples."), _graded(row, "She has 8 apples."), _graded(row, "\\boxed{7}"),
             _graded(row, "So she has 7 apples.", fallback="off")]
    assert [r["fallback"] for r in items] == [True, True, False, False]
    s = summarize(items)
    assert (s["correct"], s["fallback"], s["fallback_correct"], s["no_answer"]) == (2, 2, 1, 1)
    line = summary_line({"benchmarks": {"gsm8k": s}}, "out")
    assert line == "gsm8k 50.0% (n=4, 2 by fallback, 1 of them right); details in out"
