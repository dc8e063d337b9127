"""Critique-Guided Distillation (issue 27): the refine task of the critique stage with the world's
checker and a loopback endpoint, the cgd training set, the recipes' plans, and a cgd grid."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, checker_critiqued, tiny_run_config
from critiquelab.build import CGD_INSTRUCTION, run_build
from critiquelab.config import BuildConfig, CritiqueConfig
from critiquelab.critique import input_hash, load_prompt, read_store, render, run_critique
from critiquelab.grading import grade
from critiquelab.io import UserError, read_jsonl, write_jsonl
from tests.servers import FaultProxy

REFINER = CritiqueConfig(prompt="refine_paper")


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "critiquelab.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, cwd=str(REPO), timeout=300)


@pytest.fixture()
def critiqued(tmp_path, tiny_world):
    """Injected-error solutions of 30 world problems (about half right) and the exact checker's critiques."""
    return checker_critiqued(tiny_world, tmp_path, 30)


def test_the_checker_refines_exactly_and_follows_its_critique(critiqued, tmp_path):
    sols, crits = critiqued
    s = run_critique(sols, tmp_path / "refine", REFINER, critiques=crits)
    assert s["ok"] == s["items"] == 30 and s["task"] == "refine" and s["cost_usd"] == 0.0
    rows = {r["id"]: r for r in read_jsonl(sols)}
    refined = read_store(tmp_path / "refine" / "refined.jsonl").values()
    assert len(refined) == 30 and all(r["teacher"] == "checker" and "critique" not in r for r in refined)
    for r in refined:  # every refinement is right; a right solution is kept word for word
        sol = rows[r["id"]]
        assert grade(r["solution"], sol["answer"]).correct
        assert (r["solution"] == sol["solution"]) == sol["correct"]
    assert 5 < sum(rows[r["id"]]["correct"] for r in refined) < 25  # both kinds were refined
    again = run_critique(sols, tmp_path / "refine", REFINER, critiques=crits)  # a rerun sends nothing new
    assert again["ok"] == 30 and len(read_jsonl(tmp_path / "refine" / "refined.jsonl")) == 30

    # the input hash covers the critique: a weak teacher's other critiques are refined anew, never reused
    run_critique(sols, tmp_path / "weak", CritiqueConfig(checker_noise=0.5, seed=1))
    weak = tmp_path / "weak" / "critiques.jsonl"
    changed = sum(a["critique"] != b["critique"] for a, b in zip(
        sorted(read_store(crits).values(), key=lambda r: r["id"]),
        sorted(read_store(weak).values(), key=lambda r: r["id"]), strict=True))
    assert changed > 5
    run_critique(sols, tmp_path / "refine", REFINER, critiques=weak)
    store = read_jsonl(tmp_path / "refine" / "refined.jsonl")
    assert len(store) == 30 + changed and len({r["input"] for r in store}) == 30 + changed
    # a critique that waves a wrong solution through is followed: the solution stays wrong
    waved = [c for c in read_store(weak).values() if c["verdict"] == "right" and not rows[c["id"]]["correct"]]
    assert waved
    latest = {(r["id"], r["input"]): r["solution"] for r in store}
    for c in waved:
        assert latest[(c["id"], input_hash({**rows[c["id"]], "critique": c["critique"]}, "refine"))] == \
            rows[c["id"]]["solution"]


def test_a_panel_of_refiners_writes_one_store_with_a_ledger_each(critiqued, tmp_path):
    sols, crits = critiqued
    panel = CritiqueConfig(prompt="refine_paper", panel={"exact": {}, "weak": {"checker_noise": 0.5}})
    s = run_critique(sols, tmp_path / "r", panel, critiques=crits)
    assert set(s["teachers"]) == {"exact", "weak"} and s["ok"] == s["items"] == 60
    store = list(read_store(tmp_path / "r" / "refined.jsonl").values())
    assert {r["teacher_name"] for r in store} == {"exact", "weak"} and len(store) == 60
    rows = {r["id"]: r for r in read_jsonl(sols)}
    wrong = {n: sum(not grade(r["solution"], rows[r["id"]]["answer"]).correct for r in store if r["teacher_name"] == n)
             for n in ("exact", "weak")}
    assert wrong["exact"] == 0 and 5 < wrong["weak"] < 25  # the weak refiner slips on about half
    assert (tmp_path / "r" / "ledger-exact.json").is_file() and (tmp_path / "r" / "ledger-weak.json").is_file()


def test_a_new_refine_prompt_redoes_the_refinements_not_the_critiques():
    from dataclasses import replace

    from critiquelab.config import CritiqueConfig, key_of

    old, new = CritiqueConfig(), CritiqueConfig(refine_prompt="my_refine.yaml")
    assert key_of(new) == key_of(old)  # the critique stage's key
    assert key_of(replace(new, prompt=new.refine_prompt)) != key_of(replace(old, prompt=old.refine_prompt))


def test_a_refine_prompt_shows_question_solution_and_critique():
    prompt = load_prompt("refine_paper")
    assert prompt["task"] == "refine"
    messages = render(prompt, {"question": "What is 2 + 3?", "solution": "2 + 3 = 6", "critique": "6 is wrong."})
    user = messages[-1]["content"]
    assert "What is 2 + 3?" in user and "2 + 3 = 6" in user and "6 is wrong." in user
    assert "\\boxed{}" in messages[0]["content"]


def test_cgd_set_drops_wrong_refinements_and_exports_everywhere(critiqued, tmp_path):
    sols, crits = critiqued
    run_critique(sols, tmp_path / "refine", CritiqueConfig(prompt="refine_paper", checker_noise=0.4),
                 critiques=crits)
    refined = tmp_path / "refine" / "refined.jsonl"
    cfg = BuildConfig(methods=["cft", "cgd"], decontaminate=False,
                      exports=["messages", "hf", "parquet", "alpaca", "trl_text"])
    res = run_build(sols, crits, tmp_path / "ds", cfg, refined=refined)
    g = res["cgd"]
    assert g["policy"] == "drop" and g["wrong"] == g["dropped_wrong"] > 0 and g["unchecked"] == 0
    assert g["kept"] == g["right"] == res["counts"]["cgd"] == 30 - g["wrong"] and g["no_refinement"] == 0
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["filters"]["cgd"] == g
    rows = {r["question"]: r for r in read_jsonl(sols)}
    for ex in read_jsonl(tmp_path / "ds" / "cgd.jsonl"):
        system, user = ex["prompt"]
        assert system == {"role": "system", "content": cfg.system_prompt}  # the SFT (and inference) system prompt
        q = user["content"].split("Question:\n", 1)[1].split("\n\nYour answer:\n", 1)[0]
        sol = rows[q]
        assert user["content"].startswith(f"Question:\n{q}\n\nYour answer:\n{sol['solution']}\n\nCritique of your "
                                          "answer:\n") and user["content"].endswith(CGD_INSTRUCTION)
        assert grade(ex["completion"][0]["content"], sol["answer"]).correct
    for path in ("messages/cgd.jsonl", "parquet/cgd.parquet", "alpaca/cgd.json", "trl_text/cgd.jsonl", "hf"):
        assert (tmp_path / "ds" / path).exists()
    assert "critiquelab_cgd" in json.loads((tmp_path / "ds" / "alpaca" / "dataset_info.json").read_text())

    kept = run_build(sols, crits, tmp_path / "all", BuildConfig(methods=["cgd"], decontaminate=False,
                                                                cgd_keep_wrong=True), refined=refined)
    assert kept["counts"]["cgd"] == 30 and kept["cgd"]["dropped_wrong"] == 0 and kept["cgd"]["wrong"] == g["wrong"]
    with pytest.raises(UserError, match="cgd needs the teacher's refined solutions.*--refined"):
        run_build(sols, crits, tmp_path / "none", BuildConfig(methods=["cgd"]))


def test_refine_against_an_endpoint_from_the_cli_exit_3_then_resumes(critiqued, tmp_path):
    """A loopback OpenAI-compatible endpoint: the dry run sends nothing and counts the critique in the
    prompt; an endpoint that goes down mid-run is exit 3; the rerun finishes exactly the rest."""
    sols, crits = critiqued
    seen = []
    reply = lambda req: seen.append(req["messages"][-1]["content"]) or "Step 1: fixed\nThe answer is \\boxed{1}."  # noqa: E731
    args = ["refine", "--input", str(sols), "--critiques", str(crits), "--out", str(tmp_path / "r"),
            "critique.teacher=openai", "critique.model=gpt-x", "critique.max_attempts=2", "critique.timeout=5",
            "critique.price_in_per_mtok=2.5", "critique.price_out_per_mtok=10"]
    with FaultProxy(None, lambda i: "down" if 12 <= i < 100 else None, reply=reply) as proxy:
        dry = run_cli(*args, f"critique.base_url={proxy.url}/v1", "--dry-run")
        assert dry.returncode == 0 and proxy.requests == 0, dry.stderr
        assert "dry run (nothing sent): 30 items" in dry.stdout and "cost at most $" in dry.stdout
        est = run_critique(sols, tmp_path / "r", CritiqueConfig(teacher="openai", model="gpt-x", base_url=proxy.url,
                                                               prompt="refine_paper"), critiques=crits, dry_run=True)
        crit_est = run_critique(sols, tmp_path / "c", CritiqueConfig(teacher="openai", model="gpt-x",
                                                                     base_url=proxy.url), dry_run=True)
        assert est["prompt_tokens_est"] > crit_est["prompt_tokens_est"]  # the critiques travel in the prompts
        dying = run_cli(*args, f"critique.base_url={proxy.url}/v1")
        assert dying.returncode == 3, dying.stderr
        assert "refined solutions in" in dying.stderr and "incomplete: 18 of 30 items failed" in dying.stderr
        proxy.plan = lambda i: None
        again = run_cli(*args, f"critique.base_url={proxy.url}/v1")
    assert again.returncode == 0, again.stderr
    assert f"refined solutions in {tmp_path / 'r'}/refined.jsonl: 30/30 ok, 0 failed" in again.stdout
    store = read_jsonl(tmp_path / "r" / "refined.jsonl")
    assert sorted(r["id"] for r in store if r["status"] == "ok") == sorted(r["id"] for r in read_jsonl(sols))
    critique_texts = {c["critique"] for c in read_store(crits).values()}
    assert all(any(c in m for c in critique_texts) for m in seen)  # every request carried its critique
    ledger = json.loads((tmp_path / "r" / "ledger.json").read_text())
    assert ledger["requests_answered"] == 30 and ledger["cost_usd"] > 0


def test_bad_refine_inputs_are_one_line_exit_2(critiqued, tmp_path):
    sols, crits = critiqued
    other = tmp_path / "other.jsonl"
    write_jsonl(other, [{**r, "solution": r["solution"] + "\nchanged"} for r in read_jsonl(sols)])
    r = run_cli("refine", "--input", str(other), "--critiques", str(crits), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "none of its ok critiques is of a solution in" in r.stderr and not (tmp_path / "x").exists()
    r = run_cli("critique", "--input", str(sols), "--out", str(tmp_path / "x"), "critique.prompt=refine_paper")
    assert r.returncode == 2 and "critiquelab refine" in r.stderr and not (tmp_path / "x").exists()


def test_the_cgd_recipes_plan_offline(tmp_path):
    r = run_cli("experiment", "--config", "recipes/cgd-qwen2.5-math-7b.yaml", "--out", str(tmp_path / "run"),
                "--dry-run")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    cells = [line.split("\t")[0] for line in out.splitlines() if "\tmodel=" in line]
    assert "cgd-s0" in cells and "cft-s0" in cells and "world: none" in out
    row = next(line.split("\t") for line in out.splitlines() if line.startswith("  default\tcgd\t"))
    assert float(row[-1]) > 0  # GPU-hours of the cgd cell
    gpu_h = float(out.split("estimated GPU-hours in all: ")[1].split()[0].replace(",", ""))
    assert gpu_h >= float(row[-1]) > 0
    passes = {}
    for line in out.splitlines():
        if line.startswith("  teacher default (gpt-4o-2024-11-20) on source default, "):
            what = line.split("on source default, ")[1].split(":")[0]
            passes[what] = float(line.split(" completion tokens, $")[1].split()[0].replace(",", ""))
    assert set(passes) == {"critiques", "refinements"} and all(v > 0 for v in passes.values())
    total = float(out.split("estimated API cost in all: $")[1].split()[0].replace(",", ""))
    assert total == pytest.approx(sum(passes.values()), abs=0.02)  # critiques PLUS refinements
    assert not (tmp_path / "run").exists()

    r = run_cli("experiment", "--config", "recipes/cgd-world.yaml", "--out", str(tmp_path / "w"), "--dry-run")
    assert r.returncode == 0, r.stderr
    methods = {line.split("method=")[1].split()[0] for line in r.stdout.splitlines() if "\tmodel=" in line}
    assert methods == {"base", "sft_reference", "sft_noisy", "cft", "cgd"}
    assert "-s301\t" in r.stdout and "-s302\t" in r.stdout and not (tmp_path / "w").exists()


def test_a_cgd_grid_refines_trains_and_reports(tmp_path, monkeypatch, tiny_model):
    """The tiny world with the session's base: the base samples its own answers, a weak checker critiques
    and refines them, the wrong refinements are dropped, and the report pits CGD against CFT and the best
    SFT, with its format failures."""
    from critiquelab.experiment import run_experiment

    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    cfg = tiny_run_config(**{"base_model": str(tiny_model), "build.methods": "[sft_reference, cft, cgd]",
                             "critique.checker_noise": 0.3, "train.token_budget": 1000, "critic.n_problems": 0,
                             "train.max_length": 1024})  # this world's CGD examples: up to ~700 tokens
    res = run_experiment(cfg, tmp_path / "run")
    assert res["failed"] == []
    run = tmp_path / "run"
    cells = {c["name"]: c for c in json.loads((run / "cells.json").read_text())}
    assert cells["cgd-s0"]["status"] == "ok"
    data = run / "data" / "default" / "default"
    assert len(read_jsonl(data / "refine" / "refined.jsonl")) == len(read_jsonl(data / "critique" / "critiques.jsonl"))
    own = {r["solution"] for r in read_jsonl(run / "data" / "default" / "solutions.jsonl")}
    manifest = json.loads((data / "all" / "manifest.json").read_text())["filters"]["cgd"]
    assert manifest["kept"] == manifest["right"] > 0 and manifest["dropped_wrong"] == manifest["wrong"] > 0
    examples = read_jsonl(data / "all" / "cgd.jsonl")
    assert len(examples) == manifest["kept"]
    assert all(e["prompt"][1]["content"].split("\n\nYour answer:\n", 1)[1].split("\n\nCritique of your answer:\n")[0]
               in own for e in examples)  # the student's own sampled answers
    train_log = json.loads((run / "models" / "cgd-s0" / "train_log.json").read_text())
    assert train_log["config"]["data"].endswith("cgd.jsonl") and train_log["tokens"] >= 1000
    report = json.loads((run / "report.json").read_text())
    pairs = {(c["a"], c["b"]) for c in report["comparisons"]}
    assert {("cgd", "cft"), ("cgd", "sft_reference"), ("cgd", "base")} <= pairs
    assert {r["method"]: r["best_sft"] for r in report["vs_best_sft"]} == {"cft": "sft_reference",
                                                                           "cgd": "sft_reference"}
    assert [r["method"] for r in report["cft_vs_best_sft"]] == ["cft"]
    assert any(r["method"] == "cgd" and "format_failures" in r for r in report["runs"])
    md = (run / "report.md").read_text()
    assert "## CFT and CGD minus the best SFT" in md and "| cgd | 1 |" in md and "format failures world (%)" in md
