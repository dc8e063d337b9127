"""PRMBench as a critic benchmark: items from the shared files, metrics by hand, and eval-critic
against OpenAI-compatible stand-ins on 127.0.0.1 (one answering with the label, one constant)."""

import json

import pytest

from critiquelab.io import read_jsonl
from critiquelab.prmbench import load_prmbench, prmbench_metrics, render_steps
from critiquelab.sources import benchmarks_dir

HAVE_PRMBENCH = (benchmarks_dir() / "prmbench").is_dir()
needs_data = pytest.mark.skipif(not HAVE_PRMBENCH, reason="../shared/benchmarks/prmbench is not on this machine")


def test_steps_are_rendered_without_their_own_numbers():
    assert render_steps(["1. Let p be the price.", "2) So 2p = 0.58.", "12 apples remain."]) == \
        "Step 1: Let p be the price.\nStep 2: So 2p = 0.58.\nStep 3: 12 apples remain."


@needs_data
def test_two_items_per_row_the_first_wrong_step_the_smallest():
    items, data = load_prmbench(limit=2)
    assert data["files"] == 16 and data["rows"] == 32 and len(items) == 64
    first = next(iter(read_jsonl(sorted((benchmarks_dir() / "prmbench").glob("*.jsonl"))[0])))
    orig, mod = items[0], items[1]
    assert orig["correct"] is True and "first_error_step" not in orig
    assert mod["correct"] is False and mod["first_error_step"] == min(first["error_steps"])
    assert orig["problem_id"] == mod["problem_id"] == f"{first['classification']}-{first['idx']}"
    assert mod["solution"].splitlines()[0].startswith("Step 1: ") and \
        len(mod["solution"].splitlines()) >= len(first["modified_process"])
    assert {i["error_kind"] for i in items} == {"circular", "confidence", "counterfactual", "deception",
                                                 "domain_inconsistency", "missing_condition", "redundency",
                                                 "step_contradiction"}


def _items(kinds):
    out = []
    for r, kind in enumerate(kinds):
        out += [{"id": f"{r}-o", "problem_id": str(r), "error_kind": kind, "correct": True},
                {"id": f"{r}-m", "problem_id": str(r), "error_kind": kind, "correct": False, "first_error_step": 2}]
    return out


def test_metrics_match_hand_computation():
    items = _items(["a", "a", "b", "b"])
    # row 0: both right (step named); row 1: wrong item called right; row 2: false alarm + wrong step named;
    # row 3: no verdict on the right one, the wrong one named at step 2
    said = [("right", ""), ("wrong", "Step 2 is wrong"), ("right", ""), ("right", ""),
            ("wrong", "Step 1 is wrong"), ("wrong", "Step 3 is wrong"), (None, ""), ("wrong", "Step 2: bad")]
    js = [{"verdict": v, "critique": c} for v, c in said]
    m = prmbench_metrics(items, js)
    # right items: 2 of 4 called right; wrong items: 3 of 4 called wrong
    assert m["balanced_accuracy"] == pytest.approx((2 / 4 + 3 / 4) / 2)
    # wrong as positive: tp 3, fp 1 (row 2's right item), fn 1 -> F1 = 6/8; right: tp 2, fp 1, fn 2 -> 4/7
    assert m["f1_wrong"] == pytest.approx(6 / 8) and m["f1_right"] == pytest.approx(4 / 7)
    assert m["f1_mean"] == pytest.approx((6 / 8 + 4 / 7) / 2)
    assert m["first_error_step_accuracy"] == pytest.approx(2 / 4) and m["first_error_step_n"] == 4
    assert m["no_verdict"] == pytest.approx(1 / 8)
    assert m["by_classification"]["a"]["balanced_accuracy"] == pytest.approx((2 / 2 + 1 / 2) / 2)
    assert m["by_classification"]["b"]["first_error_step_accuracy"] == pytest.approx(1 / 2)
    for key in ("balanced_accuracy_ci95", "f1_mean_ci95", "first_error_step_ci95", "no_verdict_ci95"):
        lo, hi = m[key]
        assert 0 <= lo <= hi <= 1, key


def _label_critic():
    """A critic that knows the label of every solution text (the oracle of a perfect critic)."""
    items, _ = load_prmbench(limit=1)
    wrong_at = {s["solution"]: s.get("first_error_step") for s in items}

    def reply(req):
        solution = req["messages"][-1]["content"].split("\n\nSolution:\n", 1)[1]
        step = wrong_at[solution]
        return (f"Step {step} is wrong: the reasoning breaks here.\nConclusion: wrong [END]" if step else
                "Every step is correct.\nConclusion: right [END]")
    return reply


@needs_data
@pytest.mark.parametrize(("reply", "balanced", "first_step"), [("label", 1.0, 1.0), ("constant", 0.5, 0.0)])
def test_eval_critic_on_prmbench_through_a_served_critic(tmp_path, reply, balanced, first_step):
    from critiquelab.cli import main
    from tests.servers import FaultProxy

    out = tmp_path / "e"
    with FaultProxy(None, reply=_label_critic() if reply == "label" else None) as proxy:
        assert main(["eval-critic", "--critic", "served-critic", "--benchmark", "prmbench", "--out", str(out),
                     "critic.backend=openai", f"critic.base_url={proxy.url}/v1", "critic.benchmark_limit=1"]) == 0
        assert proxy.requests == 32  # 16 files x 1 row x (original, modified)
    result = json.loads((out / "critic.json").read_text())
    m = result["prmbench"]
    assert result["data"]["rows"] == 16 and m["items"] == 32
    assert m["balanced_accuracy"] == balanced and m["first_error_step_accuracy"] == first_step
    assert m["no_verdict"] == 0.0 and len(m["by_classification"]) == 8
    if reply == "label":
        assert m["f1_wrong"] == m["f1_right"] == m["f1_mean"] == 1.0
        assert all(k["balanced_accuracy"] == 1.0 for k in m["by_classification"].values())
    else:  # always "right": no wrong found, right found with precision 1/2
        assert m["f1_wrong"] == 0.0 and m["f1_right"] == pytest.approx(2 / 3)
    rows = read_jsonl(out / "prmbench.jsonl")
    assert len(rows) == 32 and sum(r["correct"] for r in rows) == 16
