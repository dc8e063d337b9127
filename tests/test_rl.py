"""Critique RL: verdict rewards that a constant verdict cannot game, the balanced pool, and a GRPO
run with TRL's GRPOTrainer on the tiny model (CPU)."""

import json
import subprocess
import sys

import pytest

from critiquelab.config import RLConfig
from critiquelab.io import UserError, read_jsonl, write_jsonl
from critiquelab.rl import critique_reward, pool, solve_reward


def graded_pool(n_right: int, n_wrong: int) -> list[dict]:
    return [{"id": f"s{i}", "problem_id": f"p{i}", "question": f"What is {i} + 1?", "answer": str(i + 1),
             "solution": f"{i} + 1 = {i + 1 if i < n_right else i + 2}. \\boxed{{{i + 1 if i < n_right else i + 2}}}",
             "correct": i < n_right} for i in range(n_right + n_wrong)]


def test_a_constant_verdict_scores_one_half_on_the_balanced_pool():
    rows, info = pool(graded_pool(30, 70), RLConfig())  # 30 right, 70 wrong: balanced to 30 + 30
    assert info["critique_rows"] == 60 and info["critique_share_right"] == 0.5
    for verdict in ("right", "wrong"):
        scores = critique_reward([[{"role": "assistant", "content": f"Checked.\nConclusion: {verdict} [END]"}]] * 60,
                                 [r["task"] for r in rows], [r["correct"] for r in rows])
        assert sum(scores) / len(scores) == 0.5
    silent = critique_reward(["no verdict here"] * 60, [r["task"] for r in rows], [r["correct"] for r in rows])
    assert sum(silent) == 0.0  # no verdict: no reward
    truthful = critique_reward([f"Conclusion: {'right' if r['correct'] else 'wrong'} [END]" for r in rows],
                               [r["task"] for r in rows], [r["correct"] for r in rows])
    assert sum(truthful) == 60
    unbalanced, info = pool(graded_pool(30, 70), RLConfig(balance=False))
    assert info["critique_share_right"] == 0.3  # (without balance, "wrong" every time would score 0.7)


def test_rewards_score_only_their_own_task_and_mixing_follows_the_share():
    rows, info = pool(graded_pool(10, 10), RLConfig(critique_share=0.5))
    assert info["solve_rows"] == info["critique_rows"] == 20
    tasks = [r["task"] for r in rows]
    crit = critique_reward(["Conclusion: right [END]"] * len(rows), tasks, [r["correct"] for r in rows])
    solve = solve_reward(["\\boxed{1}"] * len(rows), tasks, [r["answer"] for r in rows])
    assert all((c is None) == (t == "solve") and (s is None) == (t == "critique")
               for c, s, t in zip(crit, solve, tasks, strict=True))
    with pytest.raises(UserError, match="need both right and wrong"):
        pool(graded_pool(5, 0), RLConfig())


def test_grpo_trains_the_tiny_model_and_logs_rewards_and_verdicts(tmp_path, tiny_world, tiny_model):
    sols = tmp_path / "solutions.jsonl"
    from critiquelab.config import SampleConfig
    from critiquelab.sample import run_sample

    write_jsonl(tmp_path / "problems.jsonl", read_jsonl(tiny_world / "train.jsonl")[:12])
    run_sample(tmp_path / "problems.jsonl", sols, SampleConfig(source="synthetic", error_rate=0.5), None)
    cmd = [sys.executable, "-m", "critiquelab.cli", "rl", "--model", str(tiny_model), "--solutions", str(sols),
           "--out", str(tmp_path / "crl"), "rl.steps=3", "rl.num_generations=2", "rl.batch_size=4",
           "rl.max_completion_length=24", "rl.save_steps=2", "rl.lr=1e-4"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    log = json.loads((tmp_path / "crl" / "train_log.json").read_text())
    assert log["steps"] == 3 and len(log["curve"]) == 3
    for point in log["curve"]:
        assert 0.0 <= point["reward"] <= 1.0 and point["critiques_seen"] > 0
        assert point["no_verdict_share"] is not None
    assert (tmp_path / "crl" / "config.json").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # finished: nothing to do
    assert again.returncode == 0 and "3 steps" in again.stdout
    bad = subprocess.run([*cmd[:-6], "rl.num_generations=3", "rl.batch_size=4", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "must divide" in bad.stderr and not (tmp_path / "x").exists()


def test_the_rl_recipes_load_and_the_7b_one_plans_offline(tmp_path, tiny_world, tiny_model):
    from conftest import REPO

    r = subprocess.run([sys.executable, "-m", "critiquelab.cli", "rl", "--config",
                        "recipes/critique-rl-qwen2.5-math-7b.yaml", "--dry-run"], capture_output=True, text=True,
                       cwd=str(REPO), timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout[:r.stdout.rindex("}") + 1])
    assert plan["steps"] == 500 and plan["prompts_per_step"] == 8 and plan["config"]["use_vllm"]
    assert plan["generated_tokens_max_per_process"] == 500 * 64 * 2048 and "rl.solutions=" in plan["missing"][0]

    from critiquelab.config import SampleConfig
    from critiquelab.sample import run_sample

    write_jsonl(tmp_path / "problems.jsonl", read_jsonl(tiny_world / "train.jsonl")[:8])
    run_sample(tmp_path / "problems.jsonl", tmp_path / "s.jsonl", SampleConfig(source="synthetic"), None)
    r = subprocess.run([sys.executable, "-m", "critiquelab.cli", "rl", "--config",
                        str(REPO / "recipes/critique-rl-world.yaml"), "--model", str(tiny_model), "--solutions",
                        str(tmp_path / "s.jsonl"), "--out", str(tmp_path / "crl"), "rl.steps=1",
                        "rl.max_completion_length=16", "rl.num_generations=2", "rl.batch_size=2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "crl" / "train_log.json").read_text())["steps"] == 1
