"""Issue 23, a newcomer's first hour: your own problems (no reference solution, missing answers),
reports that check before they assert, and summary lines in plain, rounded words."""

from __future__ import annotations

import json
import logging

import pytest

from critiquelab.cli import main
from critiquelab.config import CritiqueConfig, SampleConfig
from critiquelab.critique import run_critique
from critiquelab.io import UserError, read_jsonl, write_json, write_jsonl
from critiquelab.sample import run_sample


@pytest.fixture()
def own(tmp_path, tiny_world):
    """Solutions and critiques as from the README's own-problems path: no reference solution (the
    problems have no `solution`); `drop_answers` of them without an answer (so ungraded)."""
    sols = tmp_path / "world-solutions.jsonl"
    run_sample(tiny_world / "train.jsonl", sols, SampleConfig(source="synthetic", n_problems=20, error_rate=0.5))
    run_critique(sols, tmp_path / "critique", CritiqueConfig())

    def make(drop_answers: int = 0):
        rows = [{k: v for k, v in r.items() if k not in ("reference_solution", "start", "steps")}
                for r in read_jsonl(sols)]
        for r in rows[:drop_answers]:
            r["answer"], r["correct"] = None, None
        out = tmp_path / f"own-{drop_answers}.jsonl"
        write_jsonl(out, rows)
        return out, tmp_path / "critique" / "critiques.jsonl"
    return make


def build(capsys, sols, crits, out, *extra):
    rc = main(["build", "--solutions", str(sols), "--critiques", str(crits), "--out", str(out),
               "build.decontaminate=false", *extra])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


# -- 2. the README's own problems format builds


def test_build_leaves_out_methods_the_inputs_cannot_support(own, tmp_path, capsys):
    sols, crits = own()
    rc, text = build(capsys, sols, crits, tmp_path / "ds")
    assert rc == 0, text
    counts = json.loads((tmp_path / "ds" / "manifest.json").read_text())["counts"]
    assert set(counts) == {"sft_noisy", "cft"} and counts["cft"] > 0
    assert "sft_reference not built: it needs reference solutions (`solution` in the problems file)" in text


def test_build_names_the_missing_field_when_the_method_was_asked_for(own, tmp_path, capsys):
    sols, crits = own()
    rc, text = build(capsys, sols, crits, tmp_path / "ds", "build.methods=[sft_reference,cft]")
    assert rc == 2 and not (tmp_path / "ds").exists()
    assert "sft_reference needs reference solutions (`solution` in the problems file)" in text
    assert "build.methods=[cft]" in text and len(text.strip().splitlines()) == 1


def test_build_in_a_grid_still_skips_an_empty_method(own, tmp_path):
    from critiquelab.build import run_build
    from critiquelab.config import BuildConfig

    sols, crits = own()
    res = run_build(sols, crits, tmp_path / "ds", BuildConfig(decontaminate=False), allow_empty=True)
    assert res["counts"]["sft_reference"] == 0 and "skipped_methods" not in res  # as before: the cells are skipped


# -- 3. missing labels


def problems(tmp_path, n=30, without=2, key=None):
    rows = [{"id": f"p{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(n)]
    for r in rows[:without]:
        value = r.pop("answer")
        if key:
            r[key] = value
    path = tmp_path / "problems.jsonl"
    write_jsonl(path, rows)
    return path


def test_problems_without_answers_are_a_warning_with_counts(tmp_path, caplog):
    from critiquelab.sources import load_problems

    with caplog.at_level(logging.WARNING):
        load_problems(problems(tmp_path))
    assert "2 of 30 problems have no answer (e.g. id 'p0'): their solutions are not graded" in caplog.text


def test_an_answer_under_another_key_gets_a_hint(tmp_path, caplog):
    from critiquelab.sources import load_benchmark, load_problems

    path = problems(tmp_path, without=30, key="final_answer")
    with caplog.at_level(logging.WARNING):
        load_problems(path)
    assert "none of the 30 problems has an answer" in caplog.text
    assert "they have 'final_answer': if that is the reference answer, rename it to 'answer'" in caplog.text
    with pytest.raises(UserError, match="final_answer.*a benchmark needs reference answers to grade"):
        load_benchmark(str(path))  # grading required: an error


def test_sample_line_counts_the_ungraded_and_rounds(tmp_path, tiny_world, capsys):
    rows = read_jsonl(tiny_world / "train.jsonl")[:10]
    for r in rows[:2]:
        r["answer"] = None  # (the world injector still needs the key)
    write_jsonl(tmp_path / "p.jsonl", rows)
    assert main(["sample", "--problems", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "s.jsonl"),
                 "sample.source=synthetic", "sample.error_rate=0.5"]) == 0
    line = capsys.readouterr().out
    share = sum(r["correct"] for r in read_jsonl(tmp_path / "s.jsonl") if r["correct"] is not None) / 8
    assert f"(share correct: {share:.1%} of the 8 graded; 2 not graded: their problems have no answer)" in line


def test_critic_metrics_count_the_unlabelled_and_flag_imbalance():
    from critiquelab.critic import critic_metrics

    sols = [{"id": i, "correct": i == 0} for i in range(8)] + [{"id": 8, "correct": None}, {"id": 9}]
    judged = [{"id": i, "verdict": "right", "critique": ""} for i in range(10)]
    m = critic_metrics(sols, judged)
    assert (m["n"], m["unlabelled"]) == (8, 2)
    assert m["imbalance"] == "only 1 right solution of 8: balanced accuracy is unreliable"
    balanced = [{"id": i, "correct": i % 2 == 0} for i in range(40)]
    assert "imbalance" not in critic_metrics(balanced, [{"id": i, "verdict": "right", "critique": ""}
                                                        for i in range(40)])


def test_eval_critic_line_says_what_was_left_out(monkeypatch, tmp_path, capsys):
    import critiquelab.critic as critic

    metrics = {"n": 28, "accuracy": 0.5, "balanced_accuracy": 0.5, "balanced_accuracy_ci95": [0.5, 1.0],
               "unparseable_rate": 0.0, "unlabelled": 2, "imbalance": "only 1 right solution of 28: balanced "
               "accuracy is unreliable"}
    monkeypatch.setattr(critic, "run_eval_critic", lambda *a, **k: {"metrics": metrics})
    assert main(["eval-critic", "--critic", "m", "--solutions", "s.jsonl", "--out", str(tmp_path / "c")]) == 0
    line = capsys.readouterr().out
    assert "(n=28; 2 solutions without a 'correct' label left out)" in line
    assert "WARNING: only 1 right solution of 28: balanced accuracy is unreliable" in line


def test_consistency_drop_reports_the_unlabelled_rows(own, tmp_path, capsys):
    sols, crits = own(drop_answers=5)
    rc, text = build(capsys, sols, crits, tmp_path / "ds", "build.consistency=drop", "build.methods=[cft]")
    assert rc == 0, text
    filters = json.loads((tmp_path / "ds" / "manifest.json").read_text())["filters"]
    assert filters["verdict_disagreements"]["unlabelled"] == 5
    assert "5 kept unchecked (no reference grade)" in text
    assert "{" not in text  # 9: plain words, not dicts
    assert "verdicts disagree with the reference grade (dropped)" in text


# -- 6. reports check before they assert


def _eval_dir(d, model, max_new_tokens=512, pattern=(1, 0)):
    items = [{"id": f"w{i}", "correct": bool(pattern[i % len(pattern)])} for i in range(20)]
    write_jsonl(d / "world.jsonl", items)
    k = sum(r["correct"] for r in items)
    write_json(d / "results.json", {"model": str(model), "prompt": "cot", "sampling": {"max_new_tokens": max_new_tokens},
                                    "benchmarks": {"world": {"accuracy": k / 20, "n": 20, "correct": k,
                                                             "ci95": [0.1, 0.9], "no_answer": 0}}})


def _fine_tune(d, base, data, tokens):
    d.mkdir(parents=True)
    write_json(d / "train_log.json", {"loss_curve": [{"step": 1, "loss": 1.0}], "examples": 10, "tokens": tokens,
                                      "steps": 1, "tokens_per_s": 100,
                                      "config": {"model": str(base), "data": str(data), "token_budget": 0}})


@pytest.fixture()
def work(tmp_path):
    """A hand-made work dir as the README builds it: a base, two fine-tunes of different token
    counts, the base evaluated twice, and a critic judged on the CFT set's own solutions."""
    w = tmp_path / "work"
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    questions = [f"What is {i} + 1?" for i in range(6)]
    write_jsonl(w / "solutions.jsonl", [{"id": f"s{i}", "question": q, "solution": "x", "correct": i % 2 == 0}
                                        for i, q in enumerate(questions)])
    write_jsonl(w / "dataset" / "cft.jsonl", [{"prompt": [{"role": "user", "content": f"Critique\n\nQuestion:\n{q}"}],
                                               "completion": [{"role": "assistant", "content": "c"}]}
                                              for q in questions])
    write_jsonl(w / "dataset" / "sft_noisy.jsonl", [])
    _fine_tune(w / "models" / "cft", base, w / "dataset" / "cft.jsonl", 62_221)
    _fine_tune(w / "models" / "sft", base, w / "dataset" / "sft_noisy.jsonl", 400_000)
    _eval_dir(w / "eval" / "base", base)
    _eval_dir(w / "eval" / "base_2048", base, max_new_tokens=2048, pattern=(0,))
    _eval_dir(w / "eval" / "cft", w / "models" / "cft", pattern=(1, 1, 0))
    _eval_dir(w / "eval" / "sft", w / "models" / "sft")
    write_json(w / "critic" / "cft" / "critic.json", {
        "critic": str(w / "models" / "cft"), "solutions": str(w / "solutions.jsonl"),
        "metrics": {"n": 6, "accuracy": 0.5, "balanced_accuracy": 0.5, "balanced_accuracy_ci95": [0.2, 0.8],
                    "wrong_f1": 0.5, "unparseable_rate": 0.0}})
    write_jsonl(w / "critic" / "cft" / "judgements.jsonl", [{"id": f"s{i}", "verdict": "right"} for i in range(6)])
    return w


def test_report_reads_methods_budgets_and_critic_inputs_from_the_records(work, capsys):
    assert main(["report", str(work)]) == 0, capsys.readouterr().err
    report = json.loads((work / "report.json").read_text())
    assert {r["method"] for r in report["runs"]} == {"base", "cft", "sft_noisy"}  # base_2048 is not a method
    assert [r["accuracy"] for r in report["runs"] if r["method"] == "base"] == [0.5]  # eval/base, not base_2048
    md = (work / "report.md").read_text()
    assert "same token budget" not in md
    assert "different numbers of tokens (62,221 to 400,000" in md
    assert "eval/base_2048: another evaluation of base" in md
    assert "validation problems" not in md
    assert "6 of 6 questions are in the critic's training set (not held out)" in md


def test_report_keeps_its_claims_when_the_records_support_them(tmp_path, capsys):
    run = tmp_path / "run"
    cells = [{"name": f"{m}-s0", "method": m, "seed": 0, "model": None, "source": None, "teacher": None,
              "data_size": None, "status": "ok"} for m in ("cft", "sft_noisy")]
    write_json(run / "cells.json", cells)
    for c in cells:
        _eval_dir(run / "eval" / c["name"], "x")
        (run / "models").mkdir(exist_ok=True)
        _fine_tune(run / "models" / c["name"], "/cache/base", f"{c['method']}.jsonl", 6000)
        log = json.loads((run / "models" / c["name"] / "train_log.json").read_text())
        log["config"]["token_budget"] = 6000
        write_json(run / "models" / c["name"] / "train_log.json", log)
    write_json(run / "critic" / "cft-s0" / "critic.json", {"metrics": {
        "n": 6, "accuracy": 0.5, "balanced_accuracy": 0.5, "balanced_accuracy_ci95": [0.2, 0.8], "wrong_f1": 0.5,
        "unparseable_rate": 0.0}})
    write_jsonl(run / "critic" / "cft-s0" / "judgements.jsonl", [{"id": "s0", "verdict": "right"}])
    write_json(run / "manifest.json", {"manifest": {"models": {"default": {"base": "/cache/models/base-1",
                                                                           "pretrain": {"tokens": 1}}}}})
    assert main(["report", str(run)]) == 0, capsys.readouterr().err
    md = (run / "report.md").read_text()
    assert "every fine-tune starts from the same base with the same token budget" in md
    assert "sampled solutions of validation problems" in md
    assert "Base model: `/cache/models/base-1` (pretrained on the world, kept in the cache)" in md  # 9: where
    assert "CRITIQUELAB_CACHE" in md


def test_report_on_a_directory_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a critiquelab run" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# -- 9. noise


def test_http_request_logs_are_debug_level():
    from critiquelab.cli import setup_logging

    setup_logging(verbose=False)
    for name in ("httpx", "httpx2", "openai"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO)
    setup_logging(verbose=True)
    assert logging.getLogger("httpx2").isEnabledFor(logging.DEBUG)
    setup_logging(verbose=False)


def test_train_errors_name_the_option_the_user_gave(tmp_path, capsys):
    (tmp_path / "out").write_text("x")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}))
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": [{"role": "user", "content": "q"}],
                                        "completion": [{"role": "assistant", "content": "a"}]}])
    args = ["train", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "d.jsonl")]
    main([*args, "--out", str(tmp_path / "out")])
    assert f"--out {tmp_path / 'out'}: exists and is not a directory" in capsys.readouterr().err
    main([*args, f"train.output_dir={tmp_path / 'out'}"])
    assert f"train.output_dir {tmp_path / 'out'}: exists and is not a directory" in capsys.readouterr().err
