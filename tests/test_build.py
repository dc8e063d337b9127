"""Dataset variants, filters and exports from the same items."""

import json

import pytest
from datasets import load_from_disk

from conftest import checker_critiqued
from critiquelab.build import decontaminate, run_build
from critiquelab.config import BuildConfig, CritiqueConfig, SampleConfig
from critiquelab.critique import run_critique
from critiquelab.export import import_alpaca_cft
from critiquelab.io import UserError, read_jsonl, write_jsonl
from critiquelab.sample import run_sample
from critiquelab.sources import load_benchmark


@pytest.fixture()
def items(tmp_path, tiny_world):
    return checker_critiqued(tiny_world, tmp_path, 40)


def test_all_variants_and_exports(items, tmp_path):
    sols, crits = items
    cfg = BuildConfig(methods=["sft_reference", "sft_noisy", "sft_verified", "cft", "cft_sft_mix"],
                      exports=["trl_text", "hf", "parquet", "alpaca"], mix_ratio=0.5)
    res = run_build(sols, crits, tmp_path / "ds", cfg)
    counts = res["counts"]
    solutions = read_jsonl(sols)
    right = sum(r["correct"] for r in solutions)
    assert counts["sft_noisy"] == counts["cft"] == 40 and counts["sft_reference"] == 40
    assert counts["sft_verified"] == right  # the exact checker judges right exactly the correct ones
    assert counts["cft_sft_mix"] == 80 and res["verdict_disagreements"]["count"] == 0
    hf = load_from_disk(str(tmp_path / "ds" / "hf"))
    assert set(hf) == set(counts) and len(hf["cft"]) == 40
    assert "Question:" in hf["cft"][0]["prompt"][-1]["content"]  # messages kept for TRL's chat template
    alpaca = json.loads((tmp_path / "ds" / "alpaca" / "cft.json").read_text())
    assert alpaca[0]["output"].endswith("[END]") and "Solution:" in alpaca[0]["instruction"]
    info = json.loads((tmp_path / "ds" / "alpaca" / "dataset_info.json").read_text())
    assert info["critiquelab_cft"]["file_name"] == "cft.json"
    assert (tmp_path / "ds" / "parquet" / "sft_verified.parquet").stat().st_size > 0
    assert read_jsonl(tmp_path / "ds" / "trl_text" / "cft.jsonl")[0]["completion"].endswith("[END]")


def test_consistency_filter_drops_or_flags_disagreements(items, tmp_path):
    sols, crits = items
    rows = read_jsonl(sols)
    for r in rows[:5]:  # pretend the reference grading disagrees with the teacher on 5 items
        r["correct"] = not r["correct"]
    write_jsonl(sols, rows)
    dropped = run_build(sols, crits, tmp_path / "a", BuildConfig(consistency="drop"))
    assert dropped["verdict_disagreements"]["count"] == 5 and dropped["counts"]["cft"] == 35
    flagged = run_build(sols, crits, tmp_path / "b", BuildConfig(consistency="flag"))
    assert flagged["counts"]["cft"] == 40
    assert sum("flag" in r for r in read_jsonl(tmp_path / "b" / "cft.jsonl")) == 5


def test_dedupe_and_decontamination(items, tmp_path):
    sols, crits = items
    rows = read_jsonl(sols)
    leaked = load_benchmark("gsm8k")[0]["question"]
    rows[0]["question"] = leaked
    rows[1] = {**rows[2], "id": "dup-s0", "problem_id": "dup"}  # same question as rows[2], another problem
    write_jsonl(sols, rows)
    res = run_build(sols, crits, tmp_path / "ds", BuildConfig())
    assert res["decontaminate_removed"] == {"gsm8k": 1}
    assert res["dedupe_removed"] == 1
    kept, removed = decontaminate([{"question": "Mia has 3 apples."}], 13, 0.5)
    assert len(kept) == 1 and removed == {}


def test_unknown_method_is_rejected(items, tmp_path):
    with pytest.raises(UserError, match="unknown"):
        run_build(*items, tmp_path / "ds", BuildConfig(methods=["dpo"]))


def test_import_presets_and_public_cft_layout(tmp_path):
    src = tmp_path / "metamath.jsonl"
    write_jsonl(src, [{"query": "What is 2+3?", "response": "2+3=5. The answer is: 5", "gold": "5"},
                      {"query": "What is 2*3?", "response": "The answer is: 5", "gold": "6"}])
    cfg = SampleConfig(source="import", import_path=str(src), import_preset="metamathqa",
                       import_fields={"answer": "gold"})
    res = run_sample(None, tmp_path / "sols.jsonl", cfg)
    sols = read_jsonl(tmp_path / "sols.jsonl")
    assert res["solutions"] == 2 and [s["correct"] for s in sols] == [True, False]
    write_jsonl(tmp_path / "bad.jsonl", [{"query": "x"}])
    with pytest.raises(UserError, match=r"bad\.jsonl:1: missing field"):
        run_sample(None, tmp_path / "o.jsonl", SampleConfig(source="import", import_path=str(tmp_path / "bad.jsonl"),
                                                            import_preset="metamathqa"))
    public = tmp_path / "webinstruct_cft.json"
    public.write_text(json.dumps([{"instruction": "Please critique whether the following solution to the question "
                                   "is correct.\n\n", "input": "Question:\nWhat is 1+1?\n\nSolution:\n3",
                                   "output": "1+1=2, not 3.\nConclusion: wrong [END]"}]))
    assert import_alpaca_cft(public, tmp_path / "cft.jsonl") == 1
    row = read_jsonl(tmp_path / "cft.jsonl")[0]
    assert row["prompt"][0]["content"].endswith("Solution:\n3") and row["completion"][0]["content"].endswith("[END]")


def test_the_checker_writes_in_the_chosen_style_under_its_own_teacher_key(items, tmp_path):
    """critique.checker_style: the same verdicts, recompute-style text, a teacher id that says so (so
    terse critiques already in a store are never served for it); the pretraining corpus follows
    pretrain.critique_style the same way."""
    import random

    from critiquelab.pretrain import critique_messages
    from critiquelab.world import generate_world

    sols, terse = items
    run_critique(sols, tmp_path / "recompute", CritiqueConfig(checker_style="recompute"))
    new = read_jsonl(tmp_path / "recompute" / "critiques.jsonl")
    old = {r["id"]: r for r in read_jsonl(terse)}
    assert len(new) == len(old) == 40
    for r in new:
        assert r["teacher"] == "checker[recompute]" and old[r["id"]]["teacher"] == "checker"
        assert (r["verdict"], r["error_step"]) == (old[r["id"]]["verdict"], old[r["id"]]["error_step"])
        assert "', so " not in old[r["id"]]["critique"] and ", so " in r["critique"].splitlines()[0]
    problem = generate_world(__import__("critiquelab.config", fromlist=["WorldConfig"]).WorldConfig(
        n_pretrain=5, n_train=0, n_validation=0, n_test=0))["pretrain"][0]
    text = critique_messages(problem, random.Random(0), "solve_first")[1]["content"]
    assert text.startswith("My solution:") and text.endswith("[END]")
