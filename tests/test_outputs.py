"""Output directories: critiquelab never writes into (or deletes) a directory it did not make, replaces
its own earlier output of other settings only with --overwrite, and checks the output before any
compute."""

import json

import pytest

from critiquelab.cli import main
from critiquelab.io import MARKER, read_jsonl, read_marker, write_jsonl


def user_files(d):
    """An unrelated directory of the user's, with a file and a subdirectory."""
    d.mkdir(parents=True)
    (d / "thesis.tex").write_text("years of work")
    (d / "other-model").mkdir()
    (d / "other-model" / "config.json").write_text("{}")
    return {p.relative_to(d): p.read_bytes() for p in d.rglob("*") if p.is_file()}


def unchanged(d, before) -> bool:
    return {p.relative_to(d): p.read_bytes() for p in d.rglob("*") if p.is_file()} == before


@pytest.fixture(scope="module")
def cft_data(tiny_world, tmp_path_factory):
    from critiquelab.build import cft_example
    from critiquelab.world import check

    rows = [cft_example("Critique.", p["question"], p["solution"], check(p, p["solution"]).critique)
            for p in read_jsonl(tiny_world / "train.jsonl")[:16]]
    path = tmp_path_factory.mktemp("data") / "cft.jsonl"
    write_jsonl(path, rows)
    return path


def train_args(model, data, out, *extra):
    return ["train", "--model", str(model), "--data", str(data), "--out", str(out), "train.token_budget=0",
            "train.max_steps=2", "train.batch_size=4", *extra]


def test_train_refuses_a_directory_it_did_not_make_before_any_compute(tiny_model, cft_data, tmp_path, capsys):
    mine = tmp_path / "mine"
    before = user_files(mine)
    assert main(train_args(tiny_model, cft_data, mine)) == 2
    err = capsys.readouterr().err
    assert "not made by critiquelab; refusing to write into it" in err and len(err.strip().splitlines()) == 1
    assert unchanged(mine, before) and not (mine / MARKER).exists() and not (mine / "checkpoints").exists()


def test_train_reruns_are_no_ops_and_other_settings_need_overwrite(tiny_model, cft_data, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(train_args(tiny_model, cft_data, out)) == 0
    weights = (out / "model.safetensors").read_bytes()
    assert read_marker(out)["complete"] and read_marker(out)["kind"] == "model"
    assert main(train_args(tiny_model, cft_data, out)) == 0  # the same settings: nothing to do
    assert (out / "model.safetensors").read_bytes() == weights
    capsys.readouterr()
    assert main(train_args(tiny_model, cft_data, out, "train.lr=1e-2")) == 2
    assert "made with other inputs or settings; pass --overwrite" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == weights
    assert main([*train_args(tiny_model, cft_data, out, "train.lr=1e-2"), "--overwrite"]) == 0
    assert json.loads((out / "train_log.json").read_text())["config"]["lr"] == 1e-2
    # --overwrite replaces critiquelab's own output of the same kind, never someone else's
    mine = tmp_path / "mine"
    before = user_files(mine)
    assert main([*train_args(tiny_model, cft_data, mine), "--overwrite"]) == 2
    assert unchanged(mine, before)


def test_outputs_of_another_kind_are_refused(tiny_world, tiny_model, cft_data, tmp_path, capsys):
    world = tmp_path / "w"
    assert main(["world", "--out", str(world), "world.n_pretrain=20", "world.n_train=10", "world.n_validation=5",
                 "world.n_test=5"]) == 0
    before = {p.name: p.read_bytes() for p in world.iterdir()}
    capsys.readouterr()
    assert main([*train_args(tiny_model, cft_data, world), "--overwrite"]) == 2
    assert "holds a critiquelab 'world' output, not 'model'" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in world.iterdir()} == before


def test_pretrain_and_publish_refuse_user_directories(tiny_world, tmp_path, capsys):
    mine = tmp_path / "mine"
    before = user_files(mine)
    assert main(["pretrain", "--world", str(tiny_world), "--out", str(mine), "model.hidden_size=32",
                 "model.num_layers=1", "model.num_heads=2", "model.num_kv_heads=1", "pretrain.tokens=2000"]) == 2
    assert unchanged(mine, before)
    run = tmp_path / "run"
    (run / "eval" / "base").mkdir(parents=True)
    (run / "eval" / "base" / "results.json").write_text(json.dumps(
        {"benchmarks": {"world": {"accuracy": 0.5, "n": 2, "correct": 1, "ci95": [0.1, 0.9], "no_answer": 0}}}))
    write_jsonl(run / "eval" / "base" / "world.jsonl", [{"id": "a", "correct": True}, {"id": "b", "correct": False}])
    assert main(["report", str(run), "--publish", str(mine)]) == 2
    assert "--publish" in capsys.readouterr().err and unchanged(mine, before)
    pub = tmp_path / "pub"
    assert main(["report", str(run), "--publish", str(pub)]) == 0 and (pub / "report.md").is_file()
    assert main(["report", str(run), "--publish", str(pub)]) == 0  # the same run: refreshed in place
    other = tmp_path / "run2"
    other.mkdir()
    (other / "eval").symlink_to(run / "eval")
    assert main(["report", str(other), "--publish", str(pub)]) == 2  # another run's report needs --overwrite
    assert main(["report", str(other), "--publish", str(pub), "--overwrite"]) == 0


def test_sample_never_replaces_a_file_it_did_not_write(tiny_world, tmp_path, capsys):
    out = tmp_path / "solutions.jsonl"
    out.write_text('{"my": "own notes"}\n')
    before = out.read_bytes()
    args = ["sample", "--problems", str(tiny_world / "train.jsonl"), "--out", str(out), "sample.source=synthetic",
            "sample.n_problems=5"]
    assert main([*args, "--overwrite"]) == 2
    assert "was not written by `critiquelab sample`" in capsys.readouterr().err and out.read_bytes() == before
    out.unlink()
    assert main(args) == 0 and len(read_jsonl(out)) == 5
    assert main([*args[:-1], "sample.n_problems=6"]) == 2  # other settings: --overwrite to replace
    assert main([*args[:-1], "sample.n_problems=6", "--overwrite"]) == 0 and len(read_jsonl(out)) == 6


def test_build_and_eval_check_outputs_before_work(tiny_world, tiny_model, tmp_path, capsys):
    sols, crit = tmp_path / "s.jsonl", tmp_path / "c"
    assert main(["sample", "--problems", str(tiny_world / "train.jsonl"), "--out", str(sols),
                 "sample.source=synthetic", "sample.n_problems=8"]) == 0
    assert main(["critique", "--input", str(sols), "--out", str(crit)]) == 0
    mine = tmp_path / "mine"
    before = user_files(mine)
    assert main(["build", "--solutions", str(sols), "--critiques", str(crit / "critiques.jsonl"), "--out",
                 str(mine), "build.decontaminate=false"]) == 2
    assert main(["eval", "--model", str(tiny_model), "--world", str(tiny_world), "--out", str(mine)]) == 2
    assert unchanged(mine, before)
    capsys.readouterr()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["eval", "--model", str(tiny_model), "--world", str(tiny_world), "--out", str(blocker)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err and blocker.read_text() == "x"


def test_report_never_replaces_the_users_own_report_files(tmp_path, capsys):
    run = tmp_path / "results"
    (run / "eval" / "base").mkdir(parents=True)
    (run / "eval" / "base" / "results.json").write_text(json.dumps(
        {"benchmarks": {"world": {"accuracy": 1.0, "n": 1, "correct": 1, "ci95": [0.2, 1.0], "no_answer": 0}}}))
    write_jsonl(run / "eval" / "base" / "world.jsonl", [{"id": "a", "correct": True}])
    (run / "report.md").write_text("my own notes")
    assert main(["report", str(run)]) == 2
    assert "would replace report.md, which critiquelab did not write" in capsys.readouterr().err
    assert (run / "report.md").read_text() == "my own notes" and not (run / "report.json").exists()
    (run / "report.md").unlink()
    assert main(["report", str(run)]) == 0 and main(["report", str(run)]) == 0  # its own report: refreshed
