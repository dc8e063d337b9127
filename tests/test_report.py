import pytest

from critiquelab.results import paired_comparison


def test_paired_comparison_identical_runs_show_no_effect():
    a = [1, 0, 1, 1, 0] * 20
    res = paired_comparison(a, a)
    assert res["delta"] == 0 and res["ci95"] == [0.0, 0.0] and res["p_value"] == 1.0


def test_paired_comparison_detects_a_clear_difference():
    a = [1] * 60 + [0] * 40
    b = [1] * 30 + [0] * 70  # a solves 30 more items, never fewer
    res = paired_comparison(a, b)
    assert res["delta"] == pytest.approx(0.30)
    assert res["ci95"][0] > 0.15 and res["ci95"][1] < 0.45
    assert res["p_value"] < 0.001 and res["n"] == 100


def test_paired_comparison_small_difference_is_not_significant():
    a = [1, 0] * 50
    b = a[:]
    b[0] = 0  # one item
    assert paired_comparison(a, b)["p_value"] > 0.5


def test_seed_means_pool_seeds_and_items(tmp_path):
    from critiquelab.io import write_jsonl
    from critiquelab.results import item_table, load_cells, seed_means

    for seed, pattern in enumerate([[1, 1, 0, 0], [1, 0, 0, 0]]):
        write_jsonl(tmp_path / "eval" / f"cft-s{seed}" / "world.jsonl",
                    [{"id": f"q{i}", "correct": bool(c)} for i, c in enumerate(pattern * 25)])
    (res,) = seed_means(item_table(tmp_path, load_cells(tmp_path)))
    assert (res["method"], res["seeds"], res["n"]) == ("cft", 2, 100)
    assert res["mean_accuracy"] == pytest.approx(0.375)
    assert res["ci95"][0] < 0.375 < res["ci95"][1]


# ---------------------------------------------------------------------------------------------
# Sections, each on a small run directory written by hand


def _items(n: int, right: int) -> list[dict]:
    return [{"id": f"q{i}", "correct": i < right} for i in range(n)]


def _fixture_run(root, *, sizes=(None,), sources=("default",), models=("default",)):
    """A run of base, sft_reference, sft_noisy and cft (two seeds each) on 40 world items, with training
    logs, critics of cft and the base on 10 problems x 2 solutions, a regime, a manifest and timings.
    A second model's fine-tunes solve 4 more items each."""
    from critiquelab.io import write_json, write_jsonl

    cells = [{"name": "base", "method": "base", "seed": None, "model": "default", "source": None, "teacher": None,
              "data_size": None, "status": "ok"}]
    right = {"sft_reference": 20, "sft_noisy": 16, "cft": 30}
    for model, source in [(m, s) for m in models for s in sources]:
        for size in sizes:
            for method, k in right.items():
                for seed in (0, 1):
                    name = f"{method}-{model}-{source}-{size}-s{seed}" if len(models) > 1 else \
                        f"{method}-{source}-{size}-s{seed}"
                    cells.append({"name": name, "method": method, "seed": seed, "model": model, "source": source,
                                  "teacher": "default", "data_size": size, "status": "ok", "lr": 1e-4,
                                  "lr_scores": {"0.0001": 0.5, "0.001": 0.4}, "validation_accuracy": k / 40,
                                  "model_dir": f"models/{name}"})
    cells.append({"name": "cft-x-s9", "method": "cft", "seed": 9, "model": "default", "source": "default",
                  "teacher": "default", "data_size": None, "status": "failed", "error": "out of memory"})
    for c in cells:
        k = 12 if c["method"] == "base" else right[c["method"]] + (c["seed"] or 0) - (5 if (c["data_size"] or 0) == 10
                                                                                   else 0) \
            + (4 if len(models) > 1 and c["model"] == models[-1] else 0)
        if c["status"] == "ok":
            write_json(root / "eval" / c["name"] / "results.json",
                       {"benchmarks": {"world": {"accuracy": k / 40, "n": 40, "ci95": [0.0, 1.0], "no_answer": 1}}})
            write_jsonl(root / "eval" / c["name"] / "world.jsonl", _items(40, k))
        if c["method"] != "base" and c["status"] == "ok":
            curve = [{"step": s, "loss": (2.0 if c["method"] == "cft" else 0.5) / s} for s in range(1, 6)]
            write_json(root / c["model_dir"] / "train_log.json",
                       {"loss_curve": curve, "examples": 8, "tokens": 1000, "steps": 5, "tokens_per_s": 50.0,
                        "train_loss": 0.4, "config": {"token_budget": 1000, "model": "base", "group_by_length": True}})
    write_json(root / "cells.json", cells)
    sols = [{"id": f"p{p}-{k}", "problem_id": f"p{p}", "question": "q", "solution": "s", "correct": k == 0,
             "answer": "1"} for p in range(10) for k in range(2)]
    write_jsonl(root / "critic" / "solutions.jsonl", sols)
    for name, good in (("base", 12), (cells[-2]["name"], 18)):  # the last cft cell judges better
        verdicts = [{"id": s["id"], "verdict": ("right" if s["correct"] else "wrong") if i < good else
                     ("wrong" if s["correct"] else "right")} for i, s in enumerate(sols)]
        write_jsonl(root / "critic" / name / "judgements.jsonl", verdicts)
        write_json(root / "critic" / name / "critic.json",
                   {"critic": name, "metrics": {"n": 20, "accuracy": good / 20, "balanced_accuracy": good / 20,
                                                "balanced_accuracy_ci95": [0.4, 0.9], "wrong_f1": 0.5,
                                                "unparseable_rate": 0.0, "false_alarm_rate": 0.1,
                                                "false_alarm_ci95": [0.02, 0.4], "first_error_step_accuracy": 0.5,
                                                "first_error_step_ci95": [0.2, 0.8], "first_error_step_n": 10,
                                                "recall_by_kind": {"copy_error": {"n": 4, "recall": 0.75,
                                                                                  "ci95": [0.3, 0.95]}}}})
    write_json(root / "manifest.json", {"manifest": {"name": "fixture", "seeds": [0, 1], "base_model": "base",
                                                     "provenance": {"git_commit": "abc123"}},
                                        "timings": {"train": 12.5}})
    write_json(root / "regime.json", [{"model": "default", "source": "default", "teacher": "default",
                                       "data_size": None, "share_right": 0.5, "cft_share_wrong": 0.5,
                                       "cft_examples": 8, "written_by": "the base", "teacher_error_rate": 0.1,
                                       "corrections_in_wrong_critiques": 0.9, "questions": 8, "token_budget": 1000}])
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from critiquelab.results import load_run

    return load_run(_fixture_run(tmp_path_factory.mktemp("run")))


def _md(blocks):
    from critiquelab.report import _markdown

    return _markdown(blocks)


def test_section_title_names_the_run_setting_and_left_out_cells(run):
    from critiquelab.report import section_title

    md = _md(section_title(run))
    assert md.startswith("# critiquelab report: fixture") and "2 seed(s) per method" in md
    assert "same base with the same token budget" in md


def test_section_accuracy_table_and_plot(run):
    from critiquelab.report import section_accuracy

    md = _md(section_accuracy(run))
    assert "| cft | 2 | 76.2 [" in md and "| base | 1 | 30.0 [" in md  # (30 + 31) / 80
    assert "| format failures world (%) |" in md.splitlines()[4] and (run.run_dir / "accuracy.png").is_file()


def test_section_comparisons_pairs_cft_with_every_method(run):
    from critiquelab.report import section_comparisons

    md = _md(section_comparisons(run))
    assert "| cft | base | world | +46.2 |" in md and md.count("a better") == 3


def test_section_regime_sits_beside_the_paper(run):
    from critiquelab.report import section_regime

    md = _md(section_regime(run))
    assert "## Data regime: the paper vs this run" in md and "10.0% (default)" in md


def test_section_vs_best_sft_chooses_on_validation(run):
    from critiquelab.report import section_vs_best_sft

    md = _md(section_vs_best_sft(run))
    assert "| sft_reference | validation | +25.0 |" in md  # reference beats noisy on validation


def test_section_learning_rates_one_row_per_method(run):
    from critiquelab.report import section_learning_rates

    md = _md(section_learning_rates(run))
    assert "| cft | all | 50.0 | 40.0 | 0.0001 |" in md and md.count("| sft_") == 2


def test_section_data_size_only_with_several_sizes(tmp_path, run):
    from critiquelab.report import section_data_size
    from critiquelab.results import load_run

    assert section_data_size(run) == []
    sized = load_run(_fixture_run(tmp_path / "sized", sizes=(10, 20)))
    md = _md(section_data_size(sized))
    assert "| method | 10 | 20 |" in md and (sized.run_dir / "data_size.png").is_file()


def test_section_ablation_only_with_several_sources(tmp_path, run):
    from critiquelab.report import section_ablation
    from critiquelab.results import load_run

    assert section_ablation(run) == []
    md = _md(section_ablation(load_run(_fixture_run(tmp_path / "two", sources=("base", "teacher")))))
    assert "| source | teacher | sft_reference | sft_noisy | cft |" in md
    assert "| base | default | 51.2 [" in md and "| teacher | default | 51.2 [" in md
    # with a model axis, each model's row shows its own numbers (they were the first model's for every row)
    two = load_run(_fixture_run(tmp_path / "models", sources=("base", "teacher"), models=("a", "b")))
    md = _md(section_ablation(two))
    assert "| model | source | teacher | sft_reference | sft_noisy | cft |" in md
    assert "| a | base | default | 51.2 [" in md and "| b | teacher | default | 61.3 [" in md


def test_section_critics_and_their_paired_comparison(run):
    from critiquelab.report import section_critic_comparisons, section_critics

    md = _md(section_critics(run))
    assert "| cft | 1 | 20 | 90.0 | 90.0 [40.0, 90.0] |" in md
    assert "| critic | seed | false alarms (%) [95% CI] | flags and locates 1st error (%) [95% CI] | " \
           "recall: copy_error (%) |" in md
    assert "| cft | 1 | 10.0 [2.0, 40.0] | 50.0 [20.0, 80.0] | 75.0 [30.0, 95.0] (n=4) |" in md
    md = _md(section_critic_comparisons(run))
    assert "| cft | base | 90.0 | 60.0 | +30.0 |" in md and "| 1 / 1 | 20 |" in md


def test_section_training_splits_the_loss_by_task(run):
    from critiquelab.report import section_training

    md = _md(section_training(run))
    assert "![training loss](loss.png)" in md and md.count("| 8 (-) | 1000 | 5 |") == 6
    assert list(run.curves) == ["SFT: solutions", "CFT: critiques"] and run.length_grouped


def test_section_unfinished_and_provenance(run):
    from critiquelab.report import section_provenance, section_rl, section_unfinished

    assert "| cft-x-s9 | failed | out of memory |" in _md(section_unfinished(run))
    md = _md(section_provenance(run))
    assert "| train | 12.5 |" in md and "git commit abc123" in md
    assert section_rl(run) == []


def test_write_report_is_its_sections_in_order(tmp_path):
    from critiquelab.report import SECTIONS, write_report
    from critiquelab.results import load_run

    md = write_report(_fixture_run(tmp_path)).read_text()
    assert md == _md([b for s in SECTIONS for b in s(load_run(tmp_path))])
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == 2  # accuracy, loss


def test_section_models_shows_every_model_of_the_axis(tmp_path, run):
    from critiquelab.report import section_models
    from critiquelab.results import load_run

    assert section_models(run) == []  # one model: the accuracy table is enough
    md = _md(section_models(load_run(_fixture_run(tmp_path / "models", models=("a", "b")))))
    assert "| model | base | sft_reference | sft_noisy | cft |" in md
    assert "| a | - | 51.2 [" in md and "| 76.2 [" in md.split("| a |")[1].split("\n")[0]
    assert "| 86.2 [" in md.split("| b |")[1].split("\n")[0]
