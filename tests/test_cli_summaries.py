"""The command table and the stage modules' summary lines: every subcommand has a handler, each line
says what the stage did, and the exit status follows the stage's result."""

import re

from critiquelab import cell, critique, experiment, train
from critiquelab.cli import _COMMANDS, _parser, main
from critiquelab.io import Incomplete

CRITIQUED = {"items": 10, "ok": 9, "failed": 1, "right": 5, "wrong": 3, "no_verdict": 1, "prompt_tokens": 100,
             "completion_tokens": 50, "cost_usd": 0.12, "lost_requests": 0}


def test_every_subcommand_has_a_handler():
    choices = re.search(r"\{(.+?)\}", _parser().format_usage()).group(1).split(",")
    assert sorted(choices) == sorted(_COMMANDS)


def test_critique_line_counts_verdicts_cost_and_lost_answers():
    assert critique.summary_line(CRITIQUED, "c") == ("critiques in c/critiques.jsonl: 9/10 ok (5 right, 3 wrong, "
                                                     "1 without verdict), 1 failed; tokens 100+50, $0.12")
    line = critique.summary_line({**CRITIQUED, "cost_usd": None, "lost_requests": 2}, "c")
    assert line.endswith("cost unknown (set critique.price_in_per_mtok and critique.price_out_per_mtok), "
                         "2 answers lost in transit (estimated in ledger.json)")
    dry = {"dry_run": True, "items_to_do": 1234, "note": "no tokens"}
    assert critique.summary_line(dry, "c") == "dry run (nothing sent): 1,234 items, no tokens"


def test_train_lines_of_a_plan_and_of_a_worker():
    plan = {"world_size": 2, "global_batch": 16, "planned_steps": 12, "examples": 40, "planned_tokens": 5000,
            "missing": ["a", "b"]}
    assert train.plan_line(plan) == ("dry run: world size 2, global batch 16, 12 steps, 40 examples, 5000 tokens; "
                                     "MISSING: a | b")
    assert train.summary_line({}, "out") == "done (worker process)"


def test_an_incomplete_critique_prints_its_summary_then_exits_3(monkeypatch, capsys):
    def run_critique(*args, **kwargs):
        raise Incomplete("1 of 10 items failed", CRITIQUED)

    monkeypatch.setattr(critique, "run_critique", run_critique)
    assert main(["critique", "--input", "s.jsonl", "--out", "c"]) == 3
    err = capsys.readouterr().err.splitlines()
    assert err == [critique.summary_line(CRITIQUED, "c"), "critiquelab critique: incomplete: 1 of 10 items failed"]


def test_failed_cells_exit_1_with_the_line_on_stderr(monkeypatch, capsys):
    monkeypatch.setattr(cell, "run_cell", lambda spec: {"status": "failed", "error": "boom"})
    assert main(["cell", "jobs/cft-s0.json"]) == 1
    assert capsys.readouterr().err.startswith("cell cft-s0 FAILED: boom [")
    monkeypatch.setattr(experiment, "run_experiment",
                        lambda *a, **k: {"report": "o/report.md", "failed": ["x", "y"], "pending": []})
    assert main(["demo", "--out", "o"]) == 1
    assert "report: o/report.md (and o/report.html, o/report.json); 2 cell(s) FAILED: x, y" in capsys.readouterr().err
    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: {"report": None, "failed": [], "pending": ["x"]})
    assert main(["demo", "--out", "o"]) == 0
    assert capsys.readouterr().out.startswith("1 cell(s) queued or running on Slurm (o/jobs/*.slurm.json)")


def test_the_experiment_line_names_a_base_built_with_other_kernels():
    from critiquelab import experiment

    res = {"report": "run/report.md", "failed": [], "pending": [],
           "bases_built_elsewhere": {"default": ["cpu_capability: AVX512 -> AVX2"]}}
    line = experiment.summary_line(res, "run")
    assert line.endswith("; base default was built with other versions or CPU kernels (cpu_capability: AVX512 -> AVX2)")
    assert "built with other" not in experiment.summary_line({**res, "bases_built_elsewhere": {}}, "run")
