"""Critic metrics and best-of-N on hand-made judgements with known answers, and a real judge run."""

import pytest

from critiquelab.config import CriticConfig
from critiquelab.critic import best_of_n, critic_metrics, read_judged, run_judge
from critiquelab.io import UserError, read_jsonl, write_jsonl


def sols(labels, steps=None):
    return [{"id": f"s{i}", "problem_id": f"p{i}", "question": "q", "solution": "x", "correct": c,
             "first_error_step": (steps or {}).get(i)} for i, c in enumerate(labels)]


def test_metrics_match_hand_computation():
    labels = [True, True, False, False, False, True]
    verdicts = ["right", "wrong", "wrong", "wrong", None, "right"]
    crits = ["ok", "ok", "Step 1: 1 + 1 = 2 is correct.\nStep 2 has an arithmetic error.", "Step 3 is wrong", "", "ok"]
    js = [{"id": f"s{i}", "critique": c, "verdict": v} for i, (c, v) in enumerate(zip(crits, verdicts, strict=True))]
    m = critic_metrics(sols(labels, steps={2: 2, 3: 1}), js)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["wrong_precision"] == pytest.approx(2 / 3) and m["wrong_recall"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert m["unparseable_rate"] == pytest.approx(1 / 6)
    assert m["names_first_wrong_step"] == pytest.approx(1 / 2) and m["names_first_wrong_step_n"] == 2
    lo, hi = m["balanced_accuracy_ci95"]
    assert 0 <= lo <= m["balanced_accuracy"] <= hi <= 1
    constant = critic_metrics(sols(labels), [{"id": "", "critique": "", "verdict": "wrong"}] * 6)
    assert constant["balanced_accuracy"] == 0.5


def test_metrics_need_labels():
    with pytest.raises(UserError, match="correctness"):
        critic_metrics(sols([None]), [{"id": "s0", "critique": "", "verdict": "right"}])


def test_best_of_n_curves():
    # one problem, answer 4; samples: 3 (wrong), 4 (right), 4 (right)
    rows = [{"id": f"a{i}", "problem_id": "p", "question": "q", "answer": "4", "solution": f"\\boxed{{{a}}}",
             "correct": a == 4} for i, a in enumerate([3, 4, 4])]
    js = [{"verdict": v} for v in ("wrong", "right", "right")]
    curves = best_of_n(rows, js)
    assert curves["n"] == [1, 2, 3]
    assert curves["first"] == [0, 0, 0] and curves["oracle"] == [0, 1, 1]
    assert curves["majority"] == [0, 0, 1]  # a 1-1 tie at N=2 goes to the first answer
    assert curves["critic_majority"] == [0, 1, 1]


def test_judge_is_resumable_and_counts_missing_verdicts(tiny_model, tiny_world, tmp_path):
    problems = read_jsonl(tiny_world / "test.jsonl")[:6]
    solutions = [{"id": p["id"], "question": p["question"], "solution": p["solution"]} for p in problems]
    out = tmp_path / "j.jsonl"
    cfg = CriticConfig(max_new_tokens=24)
    first = run_judge(tiny_model, solutions[:3], out, cfg)
    assert len(first) == 3 and len(read_jsonl(out)) == 3
    allj = run_judge(tiny_model, solutions, out, cfg)
    assert [j["id"] for j in allj] == [s["id"] for s in solutions] and len(read_jsonl(out)) == 6
    assert all(j["verdict"] in ("right", "wrong", None) for j in allj)
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"id": "x", "solution": "y"}])
    with pytest.raises(UserError, match=f"{bad}:1: missing field 'question'"):
        read_judged(bad)


def test_judge_and_eval_critic_through_an_openai_compatible_critic(tmp_path):
    """critic.backend=openai against a local endpoint (canned critiques ending `Conclusion: right`)."""
    from critiquelab.cli import main
    from tests.servers import FaultProxy

    path = tmp_path / "solutions.jsonl"
    write_jsonl(path, sols([True, False, True, False]))
    with FaultProxy(None) as proxy:
        args = ["--solutions", str(path), "critic.backend=openai", f"critic.base_url={proxy.url}/v1",
                "critic.max_new_tokens=2048"]
        assert main(["judge", "--critic", "served-critic", "--out", str(tmp_path / "j"), *args]) == 0
        assert main(["eval-critic", "--critic", "served-critic", "--out", str(tmp_path / "e"), *args]) == 0
        assert proxy.requests == 8
    judged = read_jsonl(tmp_path / "j" / "judgements.jsonl")
    assert [j["verdict"] for j in judged] == ["right"] * 4
    metrics = __import__("json").loads((tmp_path / "e" / "critic.json").read_text())["metrics"]
    assert metrics["accuracy"] == 0.5 and metrics["balanced_accuracy"] == 0.5


def test_eval_critic_checks_labels_before_judging(tmp_path, capsys):
    from critiquelab.cli import main

    path = tmp_path / "solutions.jsonl"
    write_jsonl(path, [{"id": f"s{i}", "question": "q", "solution": "x"} for i in range(3)])
    assert main(["eval-critic", "--critic", str(tmp_path / "no-model"), "--solutions", str(path), "--out",
                 str(tmp_path / "e")]) == 2
    assert "no row has a 'correct' label" in capsys.readouterr().err and not (tmp_path / "e").exists()


def test_metrics_show_where_a_critic_fails():
    """False alarms, recall per error kind and flagging with the first wrong step named, by hand."""
    labels = [True, True, True, True, False, False, False, False]
    kinds = [None, None, None, None, "arithmetic_slip", "arithmetic_slip", "copy_error", "wrong_final"]
    verdicts = ["right", "right", "right", "wrong", "wrong", "right", "wrong", "wrong"]
    crits = ["", "", "", "Step 1 has an arithmetic error", "Step 1: 2 + 2 = 4 is correct.\nStep 2 has an error",
             "", "Step 1 starts from 3", "The final answer is wrong"]
    rows = [{**s, "error_kind": k} for s, k in zip(sols(labels, steps={4: 2, 5: 1, 6: 2, 7: 3}), kinds, strict=True)]
    js = [{"id": f"s{i}", "critique": c, "verdict": v} for i, (c, v) in enumerate(zip(crits, verdicts, strict=True))]
    m = critic_metrics(rows, js)
    assert m["false_alarm_rate"] == pytest.approx(1 / 4)
    assert {k: (v["n"], v["recall"]) for k, v in m["recall_by_kind"].items()} == {
        "arithmetic_slip": (2, 0.5), "copy_error": (1, 1.0), "wrong_final": (1, 1.0)}
    # s4 flagged at step 2 (right), s5 missed, s6 flagged at step 1 (the error is at 2), s7 names no step
    assert m["first_error_step_accuracy"] == pytest.approx(1 / 4) and m["first_error_step_n"] == 4
    for key in ("false_alarm_ci95", "first_error_step_ci95"):
        lo, hi = m[key]
        assert 0 <= lo <= hi <= 1
