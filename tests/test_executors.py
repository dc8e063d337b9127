"""Executors: cells as child processes (in parallel, pinned to GPUs), a job that dies, a multi-process
fine-tune through `accelerate launch`, and one orchestrator per run dir. Slurm: tests/test_slurm.py."""

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict

import pytest

from conftest import tiny_run_config
from critiquelab.config import ExperimentConfig
from critiquelab.executors import _slots, check_executor
from critiquelab.experiment import run_experiment
from critiquelab.io import UserError, read_json


def small_grid(**extra):
    return tiny_run_config(**{"build.methods": "[sft_reference, cft]", "seeds": "[0]", "train.token_budget": 1500,
                              "critic.n_problems": 0, "eval.limit": 10, **extra})


def stage_records(run):
    return {p.name: p.stat().st_mtime_ns for p in (run / "stages").glob("*.json")}


def test_subprocess_cells_resume_with_the_local_executor(tmp_path, monkeypatch):
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    res = run_experiment(small_grid(**{"experiment.executor": "subprocess", "experiment.parallel_cells": 2}), run)
    assert res["failed"] == [] and res["pending"] == []
    cells = {c["name"]: c for c in read_json(run / "cells.json")}
    assert {n: c["status"] for n, c in cells.items()} == {"base": "ok", "sft_reference-s0": "ok", "cft-s0": "ok"}
    for name in cells:  # each cell ran in its own process, logged beside the run
        assert (run / "logs" / f"{name}.log").is_file()
        assert read_json(run / "jobs" / f"{name}.result.json")["status"] == "ok"
        assert (run / "eval" / name / "results.json").is_file()
    assert "train-cft-s0.json" in stage_records(run)

    before = stage_records(run)
    res = run_experiment(small_grid(), run)  # the local executor takes over: nothing is computed again
    assert res["failed"] == [] and stage_records(run) == before
    assert {c["name"]: c["status"] for c in read_json(run / "cells.json")} == {n: "ok" for n in cells}


def test_a_job_that_dies_is_failed_with_its_log_tail_and_retried(tmp_path, monkeypatch):
    """A child killed with SIGKILL (fault injected from outside the code, by a sitecustomize on the
    child's path) writes no result: the cell is failed with the log's tail; a rerun retries it alone."""
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, signal, sys\n"
        "if os.environ.get('KILL_CELL') and sys.argv[-1].endswith(os.environ['KILL_CELL'] + '.json'):\n"
        "    print('injected: killing this cell', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("KILL_CELL", "cft-s0")
    run = tmp_path / "run"
    cfg = small_grid(**{"experiment.executor": "subprocess"})
    res = run_experiment(cfg, run)
    assert res["failed"] == ["cft-s0"]
    cell = {c["name"]: c for c in read_json(run / "cells.json")}["cft-s0"]
    assert cell["status"] == "failed" and "exit status -9" in cell["error"]
    assert "injected: killing this cell" in cell["log_tail"]

    monkeypatch.delenv("KILL_CELL")
    before = stage_records(run)
    res = run_experiment(cfg, run)
    assert res["failed"] == []
    changed = {n for n, t in stage_records(run).items() if before.get(n) != t}
    assert changed == {"train-cft-s0.json", "eval-cft-s0.json"}


def test_cells_are_pinned_to_their_share_of_the_gpus(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)  # four GPUs, as generation's split test fakes them
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert _slots(ExperimentConfig(executor="subprocess", parallel_cells=2)) == [["0", "1"], ["2", "3"]]
    assert _slots(ExperimentConfig(executor="subprocess", parallel_cells=4, gpus_per_cell=1)) == [["0"], ["1"], ["2"],
                                                                                                   ["3"]]
    with pytest.raises(UserError, match="needs more than the 4 visible GPUs"):
        check_executor(ExperimentConfig(executor="subprocess", parallel_cells=3, gpus_per_cell=2))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert _slots(ExperimentConfig(executor="subprocess", parallel_cells=2)) == [[], []]  # CPU: threads are split


def test_one_orchestrator_per_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    run.mkdir()
    json.dump({"kind": "experiment", "fingerprint": None, "complete": False}, open(run / ".critiquelab.json", "w"))
    with open(run / ".lock", "w") as held:
        held.write("4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UserError, match=r"another critiquelab experiment is running in it; wait for it or stop it \(pid 4242\)"):
            run_experiment(small_grid(), run)
    assert not (run / "world").exists()


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                    reason="needs root and unshare for a loopback-only network namespace")
def test_a_cell_fine_tunes_with_two_processes_through_accelerate(tmp_path):
    """train.launcher=accelerate: the cell's fine-tune is `accelerate launch` with 2 processes (gloo on
    the CPU), inside a loopback-only network namespace; the grid sees an ordinary finished cell."""
    overrides = ["build.methods=[cft]", "train.launcher=accelerate", "train.num_processes=2", "train.batch_size=2",
                 "experiment.executor=subprocess"]
    cmd = [sys.executable, "-m", "critiquelab.cli", "experiment", "--config", str(tmp_path / "exp.yaml"),
           "--out", str(tmp_path / "run"), *overrides]
    (tmp_path / "exp.yaml").write_text(json.dumps({k: v for k, v in asdict(small_grid()).items()
                                                   if k not in ("experiment",)}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CRITIQUELAB_CACHE": str(tmp_path / "cache")}
    r = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd],
                       capture_output=True, text=True, timeout=900, env=env)
    if r.returncode != 0:  # what failed, from the cell's own record and log (the run dir goes with tmp_path)
        cells = tmp_path / "run" / "cells.json"
        errors = [c.get("error") for c in read_json(cells) if c["status"] != "ok"] if cells.is_file() else []
        logs = sorted((tmp_path / "run" / "logs").glob("*.log"))
        pytest.fail(f"exit {r.returncode}; cell errors {errors}; stderr {r.stderr[-2000:]}; "
                    + "".join(f"\n--- {p.name}:\n{p.read_text()[-4000:]}" for p in logs))
    log = read_json(tmp_path / "run" / "models" / "cft-s0" / "train_log.json")
    assert log["world_size"] == 2 and log["global_batch"] == 4
    assert {c["name"]: c["status"] for c in read_json(tmp_path / "run" / "cells.json")} == {"base": "ok", "cft-s0": "ok"}

