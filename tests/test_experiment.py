"""Experiment grids: upfront checks, the grid's cells and data, resume, failed cells, the report."""

import json
import random
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import yaml

from conftest import tiny_run_config
from critiquelab import cell
from critiquelab.cell import Stages
from critiquelab.experiment import plan_experiment, run_experiment
from critiquelab.io import UserError, read_jsonl
from critiquelab.world import check, generate_world, mistaken_critique, noisy_solution


def grid_config(**extra):
    return tiny_run_config(**{
        "build.methods": "[sft_reference, cft]", "seeds": "[0]", "data_sizes": "[10, 20]",
        "sources": "{sampled: {}, injected: {source: synthetic, error_rate: 0.6}}",
        "teachers": "{exact: {}, weak: {checker_noise: 0.4}}",
        "train.token_budget": 2000, "critic.n_problems": 0, **extra})


def test_bad_grids_are_rejected_before_anything_runs(tmp_path):
    cfg = tiny_run_config(**{"build.methods": "[cft, sft_magic]", "seeds": "[0, 0]", "critic.methods": "[sft_noisy]",
                             "eval.benchmarks": "[world, aime2099]",
                             "teachers": "{t: {tempreature: 1}, api: {teacher: openai, model: gpt-4o}}"})
    with pytest.raises(UserError) as e:
        run_experiment(cfg, tmp_path / "run")
    msg = str(e.value)
    for needle in ("sft_magic", "seeds", "aime2099", "tempreature", "critic.methods: ['sft_noisy'] are not trained",
                   "teachers.api: teacher openai needs critique.model and critique.base_url"):
        assert needle in msg
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match=r"data_sizes \[100\] exceed the 40 training questions of source"):
        plan_experiment(tiny_run_config(data_sizes="[100, 20]"))
    imported = tmp_path / "mmqa.jsonl"
    imported.write_text("".join(json.dumps({"query": f"What is {i} + 1?", "response": f"{i + 1}"}) + "\n"
                                for i in range(5)))
    src = f"{{imp: {{source: import, import_path: {imported}, import_preset: metamathqa}}}}"
    api = {"critique.teacher": "openai", "critique.model": "m", "critique.base_url": "http://127.0.0.1:9/v1"}
    with pytest.raises(UserError, match=r"data_sizes \[6\] exceed the 5 training questions of source 'imp'"):
        plan_experiment(tiny_run_config(data_sizes="[6, 5]", sources=src, **api))
    assert plan_experiment(tiny_run_config(data_sizes="[5]", sources=src, **api)).sizes == [5]


def test_plan_lists_every_cell_once():
    plan = plan_experiment(grid_config(seeds="[0, 1]"))
    names = [c.name for c in plan.cells]
    assert len(names) == len(set(names)) == 1 + 2 * 2 * 2 * 2 * 2
    assert names[:3] == ["base", "sft_reference-sampled-exact-n20-s0", "cft-sampled-exact-n20-s0"]
    assert plan.sizes == [20, 10] and set(plan.teachers) == {"exact", "weak"}
    assert plan.teachers["weak"].checker_noise == 0.4 and plan.sources["injected"].source == "synthetic"


def test_grid_runs_reports_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    cfg = grid_config()
    res = run_experiment(cfg, tmp_path / "run")
    run = tmp_path / "run"
    assert res["failed"] == []
    cells = json.loads((run / "cells.json").read_text())
    assert len(cells) == 17 and all(c["status"] == "ok" for c in cells)

    # data sizes nest, and each training set covers exactly its questions
    for src in ("sampled", "injected"):
        small = {r["problem_id"] for r in read_jsonl(run / "data" / src / "exact" / "n10.solutions.jsonl")}
        large = {r["problem_id"] for r in read_jsonl(run / "data" / src / "exact" / "n20.solutions.jsonl")}
        assert len(small) == 10 and len(large) == 20 and small < large
        assert len(read_jsonl(run / "data" / src / "exact" / "n10" / "sft_reference.jsonl")) == 10
    # the weak teacher's verdicts disagree with the exact checker on about 40% of items
    exact = {r["id"]: r["verdict"] for r in read_jsonl(run / "data" / "injected" / "exact" / "critique" / "critiques.jsonl")}
    weak = {r["id"]: r["verdict"] for r in read_jsonl(run / "data" / "injected" / "weak" / "critique" / "critiques.jsonl")}
    flipped = sum(exact[k] != weak[k] for k in exact) / len(exact)
    assert set(exact) == set(weak) and 0.2 < flipped < 0.6
    injected = read_jsonl(run / "data" / "injected" / "solutions.jsonl")
    assert all(r["source"] == "synthetic" for r in injected)

    data = json.loads((run / "report.json").read_text())
    assert {(r["source"], r["teacher"], r["data_size"]) for r in data["runs"] if r["method"] == "cft"} == {
        (s, t, n) for s in ("sampled", "injected") for t in ("exact", "weak") for n in (10, 20)}
    assert data["main_group"] == {"model": "default", "source": "sampled", "teacher": "exact", "data_size": 20}
    assert {r["data_size"] for r in data["by_data_size"]} == {10, 20}
    groups = {(c["source"], c["teacher"], c["data_size"]) for c in data["comparisons"] if c["b"] == "sft_reference"}
    assert len(groups) == 8  # CFT against SFT-reference within every data setting
    for png in ("accuracy.png", "data_size.png", "loss.png"):
        assert (run / png).stat().st_size > 1000
    md = (run / "report.md").read_text()
    assert "Accuracy vs training data size" in md and "Ablation: noisy-solution source x teacher" in md
    assert (run / "report.html").read_text().count("data:image/png;base64,") == 3
    manifest = json.loads((run / "manifest.json").read_text())["manifest"]
    assert "data/injected/weak/n10/cft.jsonl" in manifest["sha256"]

    # a rerun trains and evaluates nothing
    calls = []
    monkeypatch.setattr(cell, "run_train", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(cell, "run_eval", lambda *a, **k: calls.append(a))
    assert run_experiment(cfg, run)["failed"] == [] and calls == []


def test_a_failed_cell_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    cfg = tiny_run_config(**{"build.methods": "[sft_reference, cft]", "seeds": "[0, 1]",
                             "train.token_budget": 2000, "critic.n_problems": 0})
    real = cell.run_train

    def flaky(c, **kw):
        if c.output_dir.endswith("cft-s0"):
            raise RuntimeError("CUDA out of memory (injected)")
        return real(c, **kw)

    monkeypatch.setattr(cell, "run_train", flaky)
    res = run_experiment(cfg, tmp_path / "run")
    assert res["failed"] == ["cft-s0"]
    cells = {c["name"]: c for c in json.loads((tmp_path / "run" / "cells.json").read_text())}
    assert cells["cft-s0"]["error"] == "RuntimeError: CUDA out of memory (injected)"
    assert all(c["status"] == "ok" for n, c in cells.items() if n != "cft-s0")
    assert "## Failed and skipped cells" in (tmp_path / "run" / "report.md").read_text()

    trained = []
    monkeypatch.setattr(cell, "run_train", lambda c, **kw: trained.append(c.output_dir) or real(c, **kw))
    assert run_experiment(cfg, tmp_path / "run")["failed"] == []
    assert [p.rsplit("/", 1)[1] for p in trained] == ["cft-s0"]  # only the failed cell ran again


def test_sft_teacher_cells_train_on_the_teachers_own_solutions(tmp_path, monkeypatch):
    """Also: critique.checker_style unset follows the style the base read in pretraining
    (pretrain.critique_style), and critic.split=test has the critics judge test problems."""
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    cfg = tiny_run_config(**{"build.methods": "[sft_reference, sft_teacher]", "teachers": "{exact: {}, weak: "
                             "{checker_noise: 0.5}}", "train.token_budget": 1000, "pretrain.critique_style": "recompute",
                             "critic.n_problems": 3, "critic.n_samples": 1, "critic.split": "test",
                             "critic.methods": "[base]"})
    assert run_experiment(cfg, tmp_path / "run")["failed"] == []
    data = tmp_path / "run" / "data" / "default"
    for tch, teacher in (("exact", "checker[recompute]"), ("weak", "checker[recompute](noise=0.5,seed=0)")):
        crits = read_jsonl(data / tch / "critique" / "critiques.jsonl")
        assert {c["teacher"] for c in crits} == {teacher}
        assert all(", so " in c["critique"].splitlines()[0] for c in crits)
    test_ids = {p["id"] for p in read_jsonl(tmp_path / "run" / "world" / "test.jsonl")}
    judged = read_jsonl(tmp_path / "run" / "critic" / "solutions.jsonl")
    assert len(judged) == 3 and {s["problem_id"] for s in judged} <= test_ids
    assert "sampled solutions of test problems" in (tmp_path / "run" / "report.md").read_text()
    answers = lambda f: sorted(r["completion"][0]["content"] for r in read_jsonl(f))  # noqa: E731
    # the exact checker solves like the reference; the weak one slips on about half the problems
    assert answers(data / "exact" / "all" / "sft_teacher.jsonl") == answers(data / "exact" / "all" / "sft_reference.jsonl")
    weak = answers(data / "weak" / "all" / "sft_teacher.jsonl")
    refs = set(answers(data / "weak" / "all" / "sft_reference.jsonl"))
    assert len(weak) == len(refs) and 0.25 < sum(w not in refs for w in weak) / len(weak) < 0.75
    assert {c["method"] for c in json.loads((tmp_path / "run" / "cells.json").read_text())} == {
        "base", "sft_reference", "sft_teacher"}


def test_cli_dry_run_and_bad_config(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"seeds": [0, 1, 2], "data_sizes": [500, 1000],
                                   "build": {"methods": ["sft_reference", "cft"]}}))
    cli = [sys.executable, "-m", "critiquelab.cli"]
    r = subprocess.run([*cli, "experiment", "--config", str(exp), "--out", str(tmp_path / "x"), "--dry-run"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "13 cells" in r.stdout and "cft-n1000-s2" in r.stdout and not (tmp_path / "x").exists()
    exp.write_text(yaml.safe_dump({"world": {"n_validation": 70, "n_test": 900},
                                   "eval": {"benchmarks": ["world-validation"]}}))
    r = subprocess.run([*cli, "experiment", "--config", str(exp), "--out", str(tmp_path / "x"), "--dry-run"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "evaluation: 70 items per model (world-validation" in r.stdout, r.stdout + r.stderr
    assert re.search(r"\tbase\t1\t0\.\d\dM \(config\.json\)\t", r.stdout), r.stdout  # a miniature in millions
    exp.write_text(yaml.safe_dump({"data_sizes": [99999], "build": {"methods": ["cft", "dpo"]}}))
    r = subprocess.run([*cli, "experiment", "--config", str(exp), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "unknown ['dpo']" in r.stderr and not (tmp_path / "x").exists()


def test_changed_inputs_clear_a_stages_outputs(tmp_path):
    stages = Stages(tmp_path)
    out = tmp_path / "store"

    def work(tag):
        out.mkdir(exist_ok=True)
        (out / f"{tag}.txt").write_text(tag)
        return sorted(p.name for p in out.iterdir())

    assert stages.run("s", {"v": 1}, lambda: work("a"), outputs=(out,)) == ["a.txt"]
    assert stages.run("s", {"v": 1}, lambda: work("never"), outputs=(out,)) == ["a.txt"]  # skipped
    assert stages.run("s", {"v": 2}, lambda: work("b"), outputs=(out,)) == ["b.txt"]  # a's output is gone


def test_mistaken_critique_flips_the_verdict():
    from critiquelab.config import WorldConfig
    from critiquelab.critique import parse_verdict

    rng = random.Random(0)
    problems = generate_world(WorldConfig(n_pretrain=0, n_train=30, n_validation=0, n_test=0))["train"]
    for p in problems:
        for text in (p["solution"], noisy_solution(p, rng)[0]):
            truth = check(p, text).correct
            assert parse_verdict(mistaken_critique(p, text, rng)) == ("wrong" if truth else "right")


def test_a_cell_without_training_examples_is_skipped_not_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    # the tiny base solves nothing, so the exact checker accepts no sampled solution: SFT-verified is empty
    cfg = tiny_run_config(**{"build.methods": "[sft_verified, sft_noisy]", "train.token_budget": 1000,
                             "critic.n_problems": 0})
    res = run_experiment(cfg, tmp_path / "run")
    cells = {c["name"]: c for c in json.loads((tmp_path / "run" / "cells.json").read_text())}
    assert res["failed"] == [] and cells["sft_noisy-s0"]["status"] == "ok"
    assert cells["sft_verified-s0"]["status"] == "skipped" and "sft_verified set" in cells["sft_verified-s0"]["error"]
    assert not (tmp_path / "run" / "models" / "sft_verified-s0").exists()


def test_a_dying_teacher_fails_its_cells_and_the_stage_is_never_recorded_done(tmp_path, monkeypatch):
    """The API teacher's endpoint answers 500 to everything: the critique stage ends incomplete, the
    cells that need it fail (exit 1), the stage record stays not-done, and a rerun retries it."""
    from tests.servers import FaultProxy

    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    down = [True]
    with FaultProxy(None, lambda i: "500" if down[0] else None) as proxy:
        cfg = tiny_run_config(**{
            "build.methods": "[sft_reference, cft]", "critic.n_problems": 0, "train.token_budget": 1000,
            "sample.source": "synthetic", "critique.teacher": "openai", "critique.base_url": f"{proxy.url}/v1",
            "critique.model": "teacher", "critique.max_attempts": 1, "critique.concurrency": 4})
        res = run_experiment(cfg, tmp_path / "run")
        assert sorted(res["failed"]) == ["cft-s0", "sft_reference-s0"]
        cells = {c["name"]: c for c in json.loads((tmp_path / "run" / "cells.json").read_text())}
        assert "failed" in cells["cft-s0"]["error"] and cells["base"]["status"] == "ok"
        record = json.loads((tmp_path / "run" / "stages" / "critique-default-default.json").read_text())
        assert record["done"] is False
        down[0] = False  # the endpoint is back: the rerun retries the stage and the cells
        again = run_experiment(cfg, tmp_path / "run")
    assert again["failed"] == []
    record = json.loads((tmp_path / "run" / "stages" / "critique-default-default.json").read_text())
    assert record["done"] is True and record["result"]["ok"] == record["result"]["items"]


def test_model_axis_lr_grid_and_regime(tmp_path, monkeypatch):
    """Two bases (one pretrained with critiques, one without), a learning-rate grid picked on
    validation, the data regime measured from the files, and CFT minus the best SFT per model."""
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    cfg = tiny_run_config(**{
        "build.methods": "[sft_reference, sft_noisy, cft]", "seeds": "[0, 1]", "lr_grid": "[3e-4, 3e-3]",
        "models": "{small: {pretrain: {critique_share: 0.0}}, wide: {model: {hidden_size: 48, intermediate_size: 96}}}",
        "sample.source": "synthetic", "sample.error_rate": 0.5, "critique.checker_noise": 0.2,
        "train.select_best_on": "world-validation", "train.save_steps": 2, "train.token_budget": 1500,
        "pretrain.tokens": 40000, "critic.methods": "[base, cft]", "critic.n_problems": 4})
    plan = plan_experiment(cfg)
    assert [c.name for c in plan.cells[:2]] == ["base-small", "base-wide"]
    assert {c.model for c in plan.cells} == {"small", "wide"} and len(plan.cells) == 2 + 2 * 3 * 2
    run = tmp_path / "run"
    # one model per invocation (one machine each, say) into the same run dir, then the whole grid
    assert run_experiment(cfg, run, only_models=["small"])["failed"] == []
    cells = {c["name"]: c for c in json.loads((run / "cells.json").read_text())}
    assert {n for n, c in cells.items() if c["status"] == "pending"} == {n for n in cells if "wide" in n}
    assert {r["model"] for r in json.loads((run / "report.json").read_text())["runs"]} == {"small"}
    assert run_experiment(cfg, run, only_models=["wide"])["failed"] == []
    calls = []
    monkeypatch.setattr(cell, "run_train", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(cell, "run_eval", lambda *a, **k: calls.append(a))
    assert run_experiment(cfg, run)["failed"] == [] and calls == []
    with pytest.raises(UserError, match=r"--models: \['huge'\] are not in the experiment's models \(small, wide\)"):
        run_experiment(cfg, run, only_models=["huge"])
    cells = {c["name"]: c for c in json.loads((run / "cells.json").read_text())}
    assert all(c["status"] == "ok" for c in cells.values())

    # the grid trains the first seed at every rate, picks the best validation score, trains seed 1 at it
    for mdl in ("small", "wide"):
        for m in ("sft_reference", "sft_noisy", "cft"):
            s0, s1 = cells[f"{m}-{mdl}-s0"], cells[f"{m}-{mdl}-s1"]
            scores = s0["lr_scores"]
            assert set(scores) == {"0.0003", "0.003"}
            assert s0["lr"] == s1["lr"] == max([3e-4, 3e-3], key=lambda lr: scores[f"{lr:g}"])
            assert s0["validation_accuracy"] == scores[f"{s0['lr']:g}"]
            assert s0["model_dir"] == f"models/{m}-{mdl}-s0-lr{s0['lr']:g}"
            assert s1["model_dir"] == f"models/{m}-{mdl}-s1-lr{s1['lr']:g}"
            assert (run / "models" / f"{m}-{mdl}-s0-lr0.0003").is_dir() and (run / "models" / f"{m}-{mdl}-s0-lr0.003").is_dir()
            assert not (run / "models" / f"{m}-{mdl}-s1-lr{3e-3 if s1['lr'] == 3e-4 else 3e-4:g}").exists()
    manifest = json.loads((run / "manifest.json").read_text())["manifest"]
    assert manifest["models"]["small"]["critique_share"] == 0.0 and manifest["models"]["wide"]["critique_share"] == 0.25
    assert manifest["models"]["wide"]["params"] > manifest["models"]["small"]["params"] > 0

    # the regime, measured: the injector writes about half right; the weak teacher errs on about 20%
    regime = json.loads((run / "regime.json").read_text())
    assert {g["model"] for g in regime} == {"small", "wide"}
    for g in regime:
        sols = read_jsonl(run / "data" / g["model"] / "default" / "solutions.jsonl")
        crits = {c["id"]: c for c in read_jsonl(run / "data" / g["model"] / "default" / "default" / "critique" / "critiques.jsonl")}
        assert g["share_right"] == sum(s["correct"] for s in sols) / len(sols)
        assert 0.3 < g["share_right"] < 0.7 and 0.05 < g["teacher_error_rate"] < 0.4
        errs = sum((crits[s["id"]]["verdict"] == "right") != s["correct"] for s in sols) / len(sols)
        assert g["teacher_error_rate"] == errs
        wrong = [c for c in crits.values() if c["verdict"] == "wrong"]  # the checker's own carry the correct answer
        fixed = sum("The correct answer is" in c["critique"] for c in wrong) / len(wrong)
        assert g["corrections_in_wrong_critiques"] == fixed and fixed > 0.5
        assert 0.2 < g["cft_share_wrong"] < 0.8 and g["cft_examples"] == len(sols)

    data = json.loads((run / "report.json").read_text())
    vs = {r["model"]: r for r in data["cft_vs_best_sft"]}
    assert set(vs) == {"small", "wide"}
    for mdl, r in vs.items():
        assert r["chosen_on"] == "validation" and r["seeds"] == 2
        val = {m: sum(cells[f"{m}-{mdl}-s{s}"]["validation_accuracy"] for s in (0, 1)) / 2
               for m in ("sft_reference", "sft_noisy")}
        assert r["best_sft"] == max(val, key=lambda m: (val[m], m == "sft_reference"))
        same = next(c for c in data["comparisons"] if c["a"] == "cft" and c["b"] == r["best_sft"] and c["model"] == mdl)
        assert r["delta"] == same["delta"] and r["ci95"] == same["ci95"]
    # base comparisons stay within a model
    assert all(c["model"] in ("small", "wide") for c in data["comparisons"] if c["b"] == "base")
    assert {c["model"] for c in data["critics"]} == {"small", "wide"}
    md = (run / "report.md").read_text()
    for heading in ("## Data regime: the paper vs this run", "## CFT minus the best SFT",
                    "## Learning rates (chosen on validation)", "format failures world (%)"):
        assert heading in md
    assert (run / "size_axis.png").stat().st_size > 1000


def test_model_axis_and_lr_grid_are_checked_before_anything_runs(tmp_path):
    bad = {"lr_grid": "[1e-4, 1.0000001e-4]", "train.select_best_on": "world",
           "models": "{'..': {}, given: {base_model: /nonexistent/model, model: {hidden_size: 64}}, "
                     "odd: {pretrain: {tokens: 0}}}"}
    with pytest.raises(UserError) as e:
        run_experiment(tiny_run_config(**bad), tmp_path / "run")
    msg = str(e.value)
    for needle in ("lr_grid: need distinct positive rates", "lr_grid: set train.select_best_on to a validation set",
                   "models: name '..'", "models.given: model/pretrain settings do nothing for a given base_model",
                   "models.odd.pretrain.tokens=0: must be at least 1", "/nonexistent/model"):
        assert needle in msg, needle
    assert not (tmp_path / "run").exists()
    # an entry's shape is checked when the config is read
    with pytest.raises(UserError, match=r"models\.odd\.size: unknown key \(valid: base_model, model, pretrain\); "
                                        r"models\.odd\.pretrain: expected a mapping, got 3"):
        tiny_run_config(models="{odd: {pretrain: 3, size: 2}}")


def test_an_experiment_on_imported_data_and_a_given_base_makes_no_world(tmp_path, monkeypatch, tiny_model):
    """Every source imported, the base given, every benchmark real (checkpoints scored on a problems
    file of one's own): no world is generated and no base pretrained."""
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    imported = tmp_path / "wi.jsonl"
    imported.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}. "
                                            f"The answer is \\boxed{{{2 * i + i % 2}}}"}) + "\n" for i in range(12)))
    validation = tmp_path / "validation.jsonl"
    validation.write_text("".join(json.dumps({"id": f"v{i}", "question": f"What is {i} + 3?", "answer": str(i + 3)})
                                  + "\n" for i in range(4)))
    cfg = tiny_run_config(**{
        "base_model": str(tiny_model), "build.methods": "[sft_noisy, cft]", "build.decontaminate": "false",
        "sample.source": "import", "sample.import_path": str(imported), "sample.import_preset": "webinstruct",
        "eval.benchmarks": "[gsm8k]", "eval.limit": 3, "critic.n_problems": 0, "train.token_budget": 1000,
        "train.save_steps": 2, "train.select_best_on": str(validation), "train.select_max_new_tokens": 16,
        "critique.teacher": "hf", "critique.model": str(tiny_model), "critique.max_tokens": 32,
        "build.require_verdict": "false"})  # the tiny teacher rarely reaches a verdict
    with pytest.raises(UserError, match=r"teachers.default: the checker teacher grades world problems"):
        plan_experiment(replace(cfg, critique=replace(cfg.critique, teacher="checker", model=None)))
    res = run_experiment(cfg, tmp_path / "run")
    assert res["failed"] == []
    run = tmp_path / "run"
    assert not (run / "world").exists() and not (tmp_path / "cache").exists()
    cells = {c["name"]: c for c in json.loads((run / "cells.json").read_text())}
    assert {n: c["status"] for n, c in cells.items()} == {"base": "ok", "sft_noisy-s0": "ok", "cft-s0": "ok"}
    assert cells["cft-s0"]["validation_accuracy"] is not None  # picked on the problems file, not on a test set
    log = json.loads((run / "models" / "cft-s0" / "train_log.json").read_text())
    assert log["selection"]["benchmark"] == str(validation) and not log["selection"]["overlaps_reported_benchmark"]
    assert set(json.loads((run / "eval" / "cft-s0" / "results.json").read_text())["benchmarks"]) == {"gsm8k"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "validation.jsonl", "wi.jsonl"]  # nothing beside


def test_paper_table1_dry_run_prints_the_job_plan_offline(tmp_path):
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "critiquelab.cli", "experiment", "--config", "recipes/paper-table1.yaml",
                        "--out", str(tmp_path / "run"), "--dry-run"], capture_output=True, text=True, env=env,
                       cwd=str(__import__("conftest").REPO), timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "15 cells (3 model(s)" in out and "12 fine-tunes + 3 base evaluations, executor slurm" in out
    assert "8 GPU(s) per cell" in out and "world: none" in out
    assert "MISSING: sample.import_path=data/webinstruct-50k.jsonl" in out
    rows = [line.split("\t") for line in out.splitlines() if line.startswith("  qwen2.5_math_7b\tcft")]
    assert len(rows) == 1 and float(rows[0][-1]) > 0 and rows[0][3].startswith("7.")  # GPU-hours; 7.xB params
    assert "teacher default (gpt-4o-2024-11-20)" in out and "price source: openai.com/api/pricing" in out
    cost = float(out.split("estimated API cost in all: $")[1].split()[0].replace(",", ""))
    assert 100 < cost < 10_000
    assert not (tmp_path / "run").exists()

