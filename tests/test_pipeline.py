"""The whole loop at a tiny size: every stage's files, the loss masking, the report schema."""

import json
from dataclasses import replace

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from critiquelab.build import run_build
from critiquelab.config import TrainConfig
from critiquelab.critique import parse_verdict, run_critique
from critiquelab.evaluate import run_eval
from critiquelab.experiment import run_experiment
from critiquelab.io import read_jsonl
from critiquelab.sample import run_sample
from critiquelab.train import load_model, make_trainer, run_train


def test_base_model_is_a_real_hf_model_with_chat_template(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    text = tok.apply_chat_template([{"role": "user", "content": "Mia has 12 apples."}], tokenize=False,
                                   add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    ids = tok("12 + 345")["input_ids"]
    assert [tok.decode([i]) for i in ids if tok.decode([i]).strip().isdigit()] == list("12345")
    assert tok.decode(ids) == "12 + 345"
    assert json.loads((tiny_model / "critiquelab_pretrain.json").read_text())["stats"]["tokens"] >= 80000


def test_stages_hand_off_through_files(tmp_path, tiny_world, tiny_model, tiny_cfg):
    s = run_sample(tiny_world / "train.jsonl", tmp_path / "solutions.jsonl", tiny_cfg.sample, tiny_model)
    assert s["solutions"] == 40
    sols = read_jsonl(tmp_path / "solutions.jsonl")
    assert all({"id", "problem_id", "question", "solution", "correct", "steps"} <= set(r) for r in sols)

    c = run_critique(tmp_path / "solutions.jsonl", tmp_path / "critique", tiny_cfg.critique)
    crits = read_jsonl(tmp_path / "critique" / "critiques.jsonl")
    nonempty = [r for r in sols if r["solution"].strip()]  # empty samples are skipped, with a count
    assert c["ok"] == c["items"] == len(nonempty) == len(crits) > 0
    assert all(parse_verdict(x["critique"]) in ("right", "wrong") for x in crits)
    # the exact checker agrees with answer grading wherever the solution's steps are right
    for sol, crit in zip(nonempty, crits, strict=True):
        if crit["verdict"] == "right":
            assert sol["correct"]

    counts = run_build(tmp_path / "solutions.jsonl", tmp_path / "critique" / "critiques.jsonl", tmp_path / "ds",
                       tiny_cfg.build)["counts"]
    assert counts["cft"] == counts["sft_noisy"] == len(nonempty) and 0 < counts["sft_reference"] <= 40
    cft = read_jsonl(tmp_path / "ds" / "cft.jsonl")[0]
    assert "\n\nQuestion:\n" in cft["prompt"][0]["content"] and "\n\nSolution:\n" in cft["prompt"][0]["content"]
    assert cft["completion"][0]["content"].rstrip().endswith("[END]")

    cfg = replace(tiny_cfg.train, model=str(tiny_model), data=str(tmp_path / "ds" / "cft.jsonl"),
                  output_dir=str(tmp_path / "cft"))
    stats = run_train(cfg)
    assert stats["tokens"] >= tiny_cfg.train.token_budget and stats["loss_curve"]
    before, _ = load_model(tiny_model)
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "cft")
    changed = [n for n, p in after.named_parameters() if not torch.equal(p, dict(before.named_parameters())[n])]
    assert changed, "training changed no weights"

    res = run_eval(tmp_path / "cft", tmp_path / "eval", tiny_cfg.eval, world_dir=tiny_world)
    items = read_jsonl(tmp_path / "eval" / "world.jsonl")
    assert res["benchmarks"]["world"]["n"] == len(items) == 30
    lo, hi = res["benchmarks"]["world"]["ci95"]
    assert 0 <= lo <= res["benchmarks"]["world"]["accuracy"] <= hi <= 1


def test_prompt_tokens_carry_no_loss(tmp_path, tiny_model):
    model, tok = load_model(tiny_model)
    rows = [{"prompt": [{"role": "user", "content": f"Question {i}: 12 + {i}?"}],
             "completion": [{"role": "assistant", "content": f"Step 1: 12 + {i} = {12 + i}"}]} for i in range(8)]
    trainer, _ = make_trainer(model, tok, rows, tmp_path, TrainConfig(batch_size=8, token_budget=1), repeat=False)
    batch = next(iter(trainer.get_train_dataloader()))
    labels, ids = batch["labels"][0], batch["input_ids"][0]
    real = batch["attention_mask"][0].bool() if "attention_mask" in batch else ids != tok.pad_token_id
    labelled = tok.decode(ids[labels != -100])
    row = next(r for r in rows if r["completion"][0]["content"] in labelled)
    prompt_ids = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, return_dict=False)
    # every prompt token and every pad is masked; exactly the completion (and its end marker) is labelled
    assert labelled == row["completion"][0]["content"] + "<|im_end|>\n"
    assert int((labels != -100).sum()) == int(real.sum()) - len(prompt_ids)


def test_eval_resumes_without_regenerating(tmp_path, tiny_world, tiny_model, tiny_cfg):
    from critiquelab.llm import HFBackend

    class Counting(HFBackend):
        calls = 0

        def generate(self, conversations, sampling, on_batch=None, seeds=None):
            Counting.calls += len(conversations)
            return super().generate(conversations, sampling, on_batch, seeds)

    out = tmp_path / "eval"
    first = run_eval(tiny_model, out, tiny_cfg.eval, world_dir=tiny_world)
    lines = (out / "world.jsonl").read_text().splitlines()
    (out / "world.jsonl").write_text("\n".join(lines[:10]) + "\n" + lines[10][:15])  # killed mid-write
    backend = Counting(tiny_model)
    second = run_eval(tiny_model, out, tiny_cfg.eval, world_dir=tiny_world, backend=backend)
    assert Counting.calls == 20  # only the missing items were generated
    assert second["benchmarks"]["world"]["accuracy"] == first["benchmarks"]["world"]["accuracy"]


def test_demo_runs_end_to_end_and_reports(tmp_path, tiny_cfg, monkeypatch):
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    res = run_experiment(tiny_cfg, tmp_path / "run")
    report = res["report"]
    assert res["failed"] == []
    data = json.loads((tmp_path / "run" / "report.json").read_text())
    methods = {r["method"] for r in data["runs"]}
    assert methods == {"base", "sft_reference", "sft_noisy", "cft"}
    for r in data["runs"]:
        assert set(r) >= {"method", "seed", "benchmark", "accuracy", "n", "ci95"} and r["n"] == 30
    assert data["manifest"]["provenance"]["versions"]["trl"]
    sha = data["manifest"]["sha256"]
    assert len(sha["base_model"]) == 64 and "world/test.jsonl" in sha and "data/default/default/all/cft.jsonl" in sha
    assert {"world", "pretrain", "sample-default", "critique-default-default", "build-default-default-all",
            "total"} <= set(data["timings"])
    for png in ("accuracy.png", "loss.png"):
        assert (tmp_path / "run" / png).stat().st_size > 1000
    page = (tmp_path / "run" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3 and "<td>cft</td>" in page and 'src="http' not in page
    assert "| cft |" in report.read_text()
    pairs = {(c["a"], c["b"]) for c in data["comparisons"]}
    assert pairs == {("cft", "base"), ("cft", "sft_noisy"), ("cft", "sft_reference")}
    assert all(c["n"] == 30 and 0 < c["p_value"] <= 1 for c in data["comparisons"])
    critics = {c["method"]: c for c in data["critics"]}
    assert set(critics) == {"base", "sft_reference", "cft"}
    for c in critics.values():
        assert c["n"] == 12 and 0 <= c["balanced_accuracy"] <= 1 and c["best_of_n"]["n"] == [1, 2]
        assert (tmp_path / "run" / c["plot"]).is_file()
    from critiquelab.report import publish

    pub = publish(tmp_path / "run", tmp_path / "docs" / "demo")
    for f in ("report.md", "report.html", "report.json", "accuracy.png", "manifest.json", "critic/cft-s0/best_of_n.png"):
        assert (pub / f).stat().st_size > 0
    # a second run reuses the cached base model and skips every finished stage
    run_experiment(tiny_cfg, tmp_path / "run")
    again = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert again["manifest"]["base_model_cached"] is True
