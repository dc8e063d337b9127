"""One-shot CFT's data: seed problems by pass rate, many generators, a panel of teachers and its filters."""

import json
import subprocess
import sys

from critiquelab.io import read_jsonl, write_jsonl
from critiquelab.sample import rank_seeds


def test_picks_are_the_pass_rates_nearest_each_target():
    rows = [{"problem_id": p, "question": p, "answer": "1", "correct": c}
            for p, results in {"a": [1, 1, 1, 1], "b": [1, 1, 1, 0], "c": [1, 1, 0, 0], "d": [1, 0, 0, 0],
                               "e": [0, 0, 0, 0]}.items() for c in map(bool, results)]
    rows.append({"problem_id": "f", "question": "f", "answer": None, "correct": None})  # no reference: not ranked
    res = rank_seeds(rows)
    assert [r["pass_rate"] for r in res["ranked"]] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert res["picks"] == {"easy": "b", "medium": "c", "hard": "d"} and res["ungraded"] == 1


def test_seeds_command_samples_grades_and_ranks(tmp_path, tiny_world, tiny_model):
    problems = tmp_path / "problems.jsonl"
    write_jsonl(problems, read_jsonl(tiny_world / "train.jsonl")[:8])
    out = tmp_path / "seeds"
    cmd = [sys.executable, "-m", "critiquelab.cli", "seeds", "--problems", str(problems), "--model", str(tiny_model),
           "--k", "4", "--out", str(out), "sample.max_new_tokens=48"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    seeds = json.loads((out / "seeds.json").read_text())
    sols = read_jsonl(out / "solutions.jsonl")
    assert len(sols) == 32 and seeds["k"] == 4 and seeds["problems"] == 8
    for row in seeds["ranked"]:  # each pass rate is the share of that problem's graded samples
        mine = [s["correct"] for s in sols if s["problem_id"] == row["problem_id"]]
        assert row["k"] == 4 and row["pass_rate"] == sum(mine) / 4
    rates = {r["problem_id"]: r["pass_rate"] for r in seeds["ranked"]}
    assert abs(rates[seeds["picks"]["medium"]] - 0.5) == min(abs(x - 0.5) for x in rates.values())
    assert "medium" in r.stdout
    one = [*cmd[:cmd.index("--k")], "--k", "1", "--out", str(tmp_path / "s1")]
    r = subprocess.run(one, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "k >= 2" in r.stderr and not (tmp_path / "s1").exists()


def test_many_generators_write_one_file_each_row_naming_its_generator(tmp_path, tiny_world, tiny_model):
    """One-shot CFT's data: solutions of the same problems from several writers (models at their own
    sampling settings, the error injector), n per problem per writer, in one resumable file."""
    import pytest

    from critiquelab.config import SampleConfig
    from critiquelab.io import UserError
    from critiquelab.sample import run_sample

    problems = tmp_path / "problems.jsonl"
    write_jsonl(problems, read_jsonl(tiny_world / "train.jsonl")[:5])
    gens = {"inj": {"source": "synthetic", "error_rate": 0.5, "n_per_problem": 3},
            "hot": {"source": "model", "temperature": 1.0, "n_per_problem": 2},
            "cold": {"source": "model", "temperature": 0.0, "n_per_problem": 1}}
    cfg = SampleConfig(max_new_tokens=32, generators=gens)
    s = run_sample(problems, tmp_path / "sols.jsonl", cfg, tiny_model)
    rows = read_jsonl(tmp_path / "sols.jsonl")
    assert s["solutions"] == len(rows) == 5 * (3 + 2 + 1) and len({r["id"] for r in rows}) == len(rows)
    assert {g: sum(r["generator"] == g for r in rows) for g in gens} == {"inj": 15, "hot": 10, "cold": 5}
    assert all(r["source"] == "synthetic" if r["generator"] == "inj" else r["source"].startswith("model:")
               for r in rows)
    assert run_sample(problems, tmp_path / "sols.jsonl", cfg, tiny_model)["already_done"]
    single = run_sample(problems, tmp_path / "one.jsonl", SampleConfig(source="synthetic"), None)
    assert single["solutions"] == 5 and all("generator" not in r and r["id"].endswith("-s0")
                                             for r in read_jsonl(tmp_path / "one.jsonl"))
    with pytest.raises(UserError, match=r"sample.generators.imp.source='import': use model or synthetic"):
        run_sample(problems, tmp_path / "x.jsonl", SampleConfig(generators={"imp": {"source": "import"}}), tiny_model)


def test_a_panel_of_teachers_fills_one_store_and_build_keeps_or_filters_their_critiques(tmp_path, tiny_world):
    """Several teachers critique every solution into one store (the teacher in each key); build keeps
    every critique, drops those against the reference grade and those the majority outvotes."""
    from collections import Counter

    from critiquelab.build import run_build
    from critiquelab.config import BuildConfig, CritiqueConfig, SampleConfig
    from critiquelab.critique import load_prompt, read_store, run_critique
    from critiquelab.sample import run_sample

    problems = tmp_path / "problems.jsonl"
    write_jsonl(problems, read_jsonl(tiny_world / "train.jsonl")[:20])
    run_sample(problems, tmp_path / "sols.jsonl", SampleConfig(source="synthetic", error_rate=0.5), None)
    panel = {"exact": {}, "weak": {"checker_noise": 0.4, "seed": 1}, "weaker": {"checker_noise": 0.4, "seed": 2}}
    summary = run_critique(tmp_path / "sols.jsonl", tmp_path / "crit", CritiqueConfig(panel=panel))
    store = list(read_store(tmp_path / "crit" / "critiques.jsonl").values())
    assert summary["items"] == summary["ok"] == 60 == len(store) and set(summary["teachers"]) == set(panel)
    assert Counter(r["teacher_name"] for r in store) == {"exact": 20, "weak": 20, "weaker": 20}
    assert {f"ledger-{n}.json" for n in panel} <= {p.name for p in (tmp_path / "crit").iterdir()}
    assert run_critique(tmp_path / "sols.jsonl", tmp_path / "crit", CritiqueConfig(panel=panel))["ok"] == 60  # resumes

    sols = {s["id"]: s for s in read_jsonl(tmp_path / "sols.jsonl")}
    by_solution: dict[str, list[dict]] = {}
    for r in store:
        by_solution.setdefault(r["id"], []).append(r)
    agree = sum((r["verdict"] == "right") == sols[r["id"]]["correct"] for r in store)
    kept = 0  # what build must keep: agrees with the reference grade and with the teachers' majority
    for sid, rs in by_solution.items():
        top = Counter(r["verdict"] for r in rs).most_common(2)
        major = top[0][0] if len(top) == 1 or top[0][1] > top[1][1] else None
        kept += sum((r["verdict"] == "right") == sols[sid]["correct"] and r["verdict"] == major for r in rs)
    every = run_build(tmp_path / "sols.jsonl", tmp_path / "crit" / "critiques.jsonl", tmp_path / "all",
                      BuildConfig(methods=["cft"], critiques_per_solution="all", decontaminate=False))
    assert every["counts"]["cft"] == 60
    filtered = run_build(tmp_path / "sols.jsonl", tmp_path / "crit" / "critiques.jsonl", tmp_path / "filtered",
                         BuildConfig(methods=["cft"], critiques_per_solution="all", consistency="drop", majority=True,
                                     decontaminate=False))
    assert filtered["counts"]["cft"] == kept < agree < 60
    assert {r["teacher"] for r in read_jsonl(tmp_path / "filtered" / "cft.jsonl")} <= set(panel)
    assert "Conclusion: right [END]" in load_prompt("critique_oneshot")["system"]


def test_many_epochs_over_a_small_set_with_a_checkpoint_per_epoch_and_the_selection_curve(tmp_path, monkeypatch):
    """One-shot CFT trains many epochs over a few hundred examples and picks the epoch on validation:
    train.save_epochs saves one checkpoint per epoch, each is scored, and the report plots the curve."""
    from conftest import tiny_run_config
    from critiquelab.experiment import run_experiment
    from critiquelab.io import read_json

    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    cfg = tiny_run_config(**{"build.methods": "[cft]", "data_sizes": "[4]", "train.token_budget": 0,
                             "train.epochs": 3, "train.save_epochs": "true", "train.batch_size": 4,
                             "train.select_best_on": "world-validation", "train.select_limit": 10,
                             "critic.n_problems": 0, "eval.limit": 10})
    res = run_experiment(cfg, tmp_path / "run")
    assert res["failed"] == []
    log = read_json(tmp_path / "run" / "models" / "cft-s0" / "train_log.json")
    # The set holds 2 to 4 rows (the base's empty solutions are not critiqued, and which of the 4
    # come out empty varies with the base's directory, part of every sampling seed): the plan must
    # count an epoch's partial step (tests/test_train.py pins 2 rows down).
    assert 1 <= log["examples"] <= 4 and log["steps"] == log["planned_steps"]
    per_epoch = log["planned_steps"] // 3
    assert sorted(int(k.split("-")[1]) for k in log["selection"]["all"]) == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert (tmp_path / "run" / "selection.png").is_file()
    assert "selection.png" in (tmp_path / "run" / "report.md").read_text()


def test_a_one_shot_grid_picks_its_seed_and_builds_from_many_generators_and_teachers(tmp_path, monkeypatch):
    """The experiment's one-shot source: the medium seed by the base's pass rate, solutions from
    several generators of that one problem, a teacher panel, every critique kept and filtered."""
    from conftest import tiny_run_config
    from critiquelab.experiment import run_experiment
    from critiquelab.io import read_json

    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    cfg = tiny_run_config(**{
        "aux_models": "{other: {model: {hidden_size: 16, num_heads: 2, num_kv_heads: 1, intermediate_size: 32}, "
                      "pretrain: {tokens: 20000}}}",
        "sources": "{one: {seed_problem: medium, seed_candidates: 10, seed_k: 2, generators: "
                   "{hot: {source: model, n_per_problem: 3}, inj: {source: synthetic, n_per_problem: 3}, "
                   "other: {model: '@other', n_per_problem: 2}}}}",
        "teachers": "{panel: {panel: {exact: {}, w1: {checker_noise: 0.3, seed: 1}, w2: {checker_noise: 0.3, seed: 2}, "
                    "own: {teacher: hf, model: '@base', max_tokens: 16}}}}",
        "build.methods": "[sft_correct, cft]", "build.critiques_per_solution": "all", "build.majority": "true",
        "build.consistency": "drop", "critic.n_problems": 0, "eval.limit": 10, "train.token_budget": 1000})
    from dataclasses import replace

    import pytest

    from critiquelab.experiment import plan_experiment
    from critiquelab.io import UserError

    bad = replace(cfg, teachers={"panel": {"panel": {"x": {"teacher": "hf", "model": "@nope"}}}})
    with pytest.raises(UserError, match=r"teachers.panel.panel.x.model=@nope: no such aux_models entry"):
        plan_experiment(bad)
    res = run_experiment(cfg, tmp_path / "run")
    assert res["failed"] == []
    data = tmp_path / "run" / "data" / "one"
    picks = read_json(data / "seeds" / "seeds.json")["picks"]
    sols = read_jsonl(data / "solutions.jsonl")
    assert {s["problem_id"] for s in sols} == {picks["medium"]} and len(sols) == 8
    assert {s["generator"] for s in sols} == {"hot", "inj", "other"}
    other = next(s["source"] for s in sols if s["generator"] == "other")  # the aux base, pretrained and cached
    assert other.startswith("model:") and other != next(s["source"] for s in sols if s["generator"] == "hot")
    store = read_jsonl(data / "panel" / "critique" / "critiques.jsonl")
    assert {r["teacher_name"] for r in store} == {"exact", "w1", "w2", "own"}
    manifest = read_json(data / "panel" / "all" / "manifest.json")
    written = sum(bool(s["solution"].strip()) for s in sols)  # (an empty solution is not critiqued)
    assert manifest["filters"]["critiques_per_solution"]["critiques"] == 4 * written
    cells = {c["name"]: c["status"] for c in read_json(tmp_path / "run" / "cells.json")}
    assert cells["cft-s0"] == "ok" and cells["sft_correct-s0"] in ("ok", "skipped")


def test_the_7b_one_shot_recipe_plans_offline(tmp_path):
    from conftest import REPO

    r = subprocess.run([sys.executable, "-m", "critiquelab.cli", "experiment", "--config",
                        "recipes/one-shot-cft-qwen2.5-math-7b.yaml", "--out", str(tmp_path / "run"), "--dry-run"],
                       capture_output=True, text=True, cwd=str(REPO), timeout=300,
                       env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert "3 cells (1 model(s), 1 source(s), 1 teacher(s)" in r.stdout and "world: none" in r.stdout
    cft = next(line.split("\t") for line in r.stdout.splitlines() if line.startswith("  default\tcft"))
    assert int(cft[4].replace(",", "")) > 10_000_000  # 100 solutions x 7 teachers x 50 epochs
    assert sum(line.startswith("  teacher panel.") for line in r.stdout.splitlines()) == 3  # the 3 API teachers
    assert not (tmp_path / "run").exists()
