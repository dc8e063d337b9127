"""Bad input: one clear line naming the problem, exit status 2, no traceback, nothing half-written."""

import os
import subprocess
import sys

import pytest

from critiquelab.cli import main


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "critiquelab.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_unknown_preset_is_one_line_and_exit_2():
    r = run_cli("demo", "--preset", "huge", "--out", "/tmp/never-used")
    assert r.returncode == 2
    assert r.stderr.strip() == "critiquelab demo: error: unknown preset 'huge' (valid: fast, full, gpu)"
    assert "Traceback" not in r.stderr


def test_malformed_jsonl_line_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "responses.jsonl"
    bad.write_text('{"response": "\\\\boxed{2}", "reference": "2"}\n{"response": oops}\n')
    assert main(["grade", "--responses", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: malformed JSON line" in err


def test_missing_model_dir(tmp_path, capsys, tiny_world):
    assert main(["eval", "--model", str(tmp_path / "nope"), "--world", str(tiny_world), "--out",
                 str(tmp_path / "e")]) == 2
    assert "not a model directory" in capsys.readouterr().err


def test_unknown_benchmark_fails_before_loading_a_model(tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "nope"), "--benchmarks", "math-5000", "--out",
                 str(tmp_path / "e")]) == 2
    assert "unknown benchmark 'math-5000'" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_unwritable_output_dir(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert main(["demo", "--out", str(ro / "run")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_unwritable_output_dir_as_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "--out", str(blocker / "run")]) == 2
    assert "cannot create the directory (Not a directory)" in capsys.readouterr().err


def test_bad_override_is_rejected(tmp_path, capsys):
    assert main(["world", "--out", str(tmp_path / "w"), "world.n_tset=3"]) == 2
    assert "world.n_tset: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_world_cli_writes_splits(tmp_path, capsys):
    assert main(["world", "--out", str(tmp_path / "w"), "world.n_pretrain=20", "world.n_train=10",
                 "world.n_validation=5", "world.n_test=5"]) == 0
    assert "wrote world" in capsys.readouterr().out
    assert (tmp_path / "w" / "test.jsonl").read_text().count("\n") == 5
