import random

import pytest

from critiquelab.config import WorldConfig
from critiquelab.io import UserError
from critiquelab.world import ERROR_KINDS, check, generate_world, noisy_solution, write_world

CFG = WorldConfig(n_pretrain=600, n_train=300, n_validation=60, n_test=80)


def test_world_is_deterministic_and_sized():
    a, b = generate_world(CFG), generate_world(CFG)
    assert a == b
    assert {k: len(v) for k, v in a.items()} == {"pretrain": 600, "train": 300, "validation": 60, "test": 80}
    assert generate_world(WorldConfig(**{**CFG.__dict__, "seed": 1}))["test"] != a["test"]


def test_splits_are_disjoint_by_arithmetic_across_seeds():
    def keys(world, split):
        return {(p["start"], tuple((op, n) for op, n, _ in p["steps"])) for p in world[split]}

    w0, w1 = generate_world(CFG), generate_world(WorldConfig(**{**CFG.__dict__, "seed": 7}))
    for w in (w0, w1):
        for s in ("pretrain", "train", "validation"):
            assert not keys(w, s) & keys(w, "test")
        assert not keys(w, "pretrain") & keys(w, "validation")
    # a problem's split depends only on its arithmetic: no seed can move a test problem into training
    assert not (keys(w1, "pretrain") | keys(w1, "train")) & keys(w0, "test")


def test_difficulty_knobs_are_respected():
    cfg = WorldConfig(min_steps=3, max_steps=3, operations="+/", max_value=100, n_pretrain=50, n_train=50,
                      n_validation=10, n_test=10)
    for p in generate_world(cfg)["train"]:
        assert len(p["steps"]) == 3
        assert {op for op, _, _ in p["steps"]} <= set("+/")
        v = p["start"]
        for op, n, _ in p["steps"]:
            v = v + n if op == "+" else v // n
            assert 0 <= v <= 100
        assert str(v) == p["answer"]
        assert p["solution"].endswith(f"\\boxed{{{v}}}.")


def test_bad_world_config_is_rejected():
    with pytest.raises(UserError, match="operations"):
        generate_world(WorldConfig(operations="+^"))


def test_checker_accepts_references_and_catches_every_injected_error():
    world = generate_world(CFG)
    rng = random.Random(0)
    for p in world["train"][:150]:
        ok = check(p, p["solution"])
        assert ok.correct and ok.critique.endswith("Conclusion: right [END]")
        for kind in ERROR_KINDS:
            text, info = noisy_solution(p, rng, kind=kind)
            res = check(p, text)
            assert not res.correct, (kind, text)
            assert res.critique.endswith("Conclusion: wrong [END]")
            assert f"The correct answer is {p['answer']}." in res.critique
            if kind in ("arithmetic_slip", "copy_error"):
                assert (res.error_kind, res.error_step) == (kind, info["step"])


def test_checker_names_the_first_wrong_step():
    p = {"question": "Mia has 10 apples. Then Mia buys 5 more. Then Mia doubles them. How many?",
         "start": 10, "answer": "30", "steps": [["+", 5, "buys 5 more"], ["*", 2, "doubles them"]]}
    res = check(p, "Step 1: 10 + 5 = 16\nStep 2: 16 * 2 = 32\nThe answer is \\boxed{32}.")
    assert (res.error_step, res.error_kind) == (1, "arithmetic_slip")
    assert "10 + 5 = 15, not 16" in res.critique
    res = check(p, "Step 1: 10 + 5 = 15\nStep 2: 15 + 2 = 17\nThe answer is \\boxed{17}.")
    assert (res.error_step, res.error_kind) == (2, "wrong_operation")
    res = check(p, "Step 1: 10 + 5 = 15\nStep 2: 15 * 2 = 30\nThe answer is \\boxed{31}.")
    assert res.error_kind == "wrong_final"
    res = check(p, "I think it is 30")
    assert not res.correct and res.error_kind == "skipped_step"
    res = check(p, "Step 1: import os; os.system('x')\nThe answer is \\boxed{30}.")
    assert not res.correct and res.error_kind == "unreadable"


def test_write_world_writes_every_split(tmp_path):
    counts = write_world(CFG, tmp_path)
    assert counts["test"] == 80
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        ".critiquelab.json", "manifest.json", "pretrain.jsonl", "test.jsonl", "train.jsonl", "validation.jsonl"]


@pytest.mark.parametrize("style", ["recompute", "solve_first"])
def test_every_critique_style_gives_the_checkers_verdict_names_the_step_and_carries_the_correction(style):
    from critiquelab.critic import named_step
    from critiquelab.critique import parse_verdict
    from critiquelab.world import mistaken_critique

    rng = random.Random(1)
    for p in generate_world(CFG)["train"][:80]:
        for text in [p["solution"]] + [noisy_solution(p, rng, kind=k)[0] for k in ERROR_KINDS]:
            terse, res = check(p, text), check(p, text, style)
            assert (res.correct, res.error_step, res.error_kind) == (terse.correct, terse.error_step, terse.error_kind)
            assert parse_verdict(res.critique) == ("right" if terse.correct else "wrong")
            if not res.correct:
                assert f"The correct answer is {p['answer']}." in res.critique  # the correction
                if res.error_step <= len(p["steps"]):
                    assert named_step(res.critique) == res.error_step, res.critique
            mistaken = mistaken_critique(p, text, random.Random(0), style)
            assert parse_verdict(mistaken) == ("wrong" if terse.correct else "right")
    # recompute writes the step's true value before it reads the solution's
    p = {"question": "Mia has 10 apples. Then Mia buys 5 more. Then Mia doubles them. How many?",
         "start": 10, "answer": "30", "steps": [["+", 5, "buys 5 more"], ["*", 2, "doubles them"]]}
    line = check(p, "Step 1: 10 + 5 = 16\nStep 2: 16 * 2 = 32\nThe answer is \\boxed{32}.", "recompute").critique
    assert line.splitlines()[0] == ("Step 1: 'buys 5 more' is + 5, so 10 + 5 = 15. The solution has 10 + 5 = 16, "
                                    "but 10 + 5 is 15: wrong.")
    with pytest.raises(ValueError, match="critique style"):
        check(p, "", "verbose")
