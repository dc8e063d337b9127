"""The Slurm executor against a real Slurm: a single-node cluster on 127.0.0.1 started by
checks/slurm/start.sh (opt-in: `make test-slurm`; needs root and apt for slurm-wlm and munge).

Cells run as a submitit job array; a detached call returns while jobs run and a later call collects
them without resubmitting; a job requeued mid-training resumes from its last checkpoint; a grid
started on Slurm finishes with the local executor without computing anything again."""

import os
import shutil
import subprocess
import time

import pytest

from conftest import REPO
from critiquelab.experiment import run_experiment
from critiquelab.io import read_json
from test_executors import small_grid, stage_records

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.geteuid() != 0 or shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("needs root (the cluster's daemons) and slurm-wlm or apt-get")
    state = tmp_path_factory.mktemp("slurm")
    out = subprocess.run([str(REPO / "checks/slurm/start.sh"), str(state)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    saved = dict(os.environ)
    for line in out.stdout.splitlines():  # `export NAME=VALUE` lines
        if line.startswith("export "):
            name, value = line.removeprefix("export ").split("=", 1)
            os.environ[name] = os.path.expandvars(value.strip("'\""))
    yield state
    subprocess.run([str(REPO / "checks/slurm/stop.sh"), str(state)], timeout=120)
    os.environ.clear()
    os.environ.update(saved)


def slurm_grid(**extra):
    return small_grid(**{"experiment.executor": "slurm", "experiment.poll_seconds": 1,
                         "experiment.slurm.cpus_per_task": 1, "experiment.slurm.time_min": 20, **extra})


def test_cells_run_as_a_job_array_and_resume_with_the_local_executor(slurm, tmp_path, monkeypatch):
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    res = run_experiment(slurm_grid(), run)
    assert res["failed"] == [] and res["pending"] == []
    ids = {n: read_json(run / "jobs" / f"{n}.slurm.json")["job_id"] for n in ("base", "sft_reference-s0", "cft-s0")}
    assert len({i.split("_")[0] for i in ids.values()}) == 1  # one array
    assert {c["name"]: c["status"] for c in read_json(run / "cells.json")} == {n: "ok" for n in ids}
    before = stage_records(run)
    assert run_experiment(small_grid(), run)["failed"] == [] and stage_records(run) == before


def test_a_detached_call_returns_and_a_later_call_collects(slurm, tmp_path, monkeypatch):
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    res = run_experiment(slurm_grid(**{"experiment.wait": "false"}), run)
    assert res["report"] is None and set(res["pending"]) == {"base", "sft_reference-s0", "cft-s0"}
    assert {c["status"] for c in read_json(run / "cells.json")} == {"running"}
    ids = {p.name: read_json(p)["job_id"] for p in (run / "jobs").glob("*.slurm.json")}
    res = run_experiment(slurm_grid(), run)  # waits for the same jobs: nothing is submitted again
    assert res["failed"] == [] and res["pending"] == []
    assert {p.name: read_json(p)["job_id"] for p in (run / "jobs").glob("*.slurm.json")} == ids


def test_a_requeued_job_resumes_from_its_last_checkpoint(slurm, tmp_path, monkeypatch):
    """`scontrol requeue` kills the running fine-tune; Slurm runs the job again and the cell resumes
    from the checkpoint it had written, then finishes."""
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    cfg = slurm_grid(**{"build.methods": "[cft]", "train.token_budget": 400000, "train.batch_size": 2,
                        "train.save_steps": 5, "experiment.wait": "false"})
    res = run_experiment(cfg, run)
    assert "cft-s0" in res["pending"]
    job = read_json(run / "jobs" / "cft-s0.slurm.json")["job_id"]
    checkpoints = run / "models" / "cft-s0" / "checkpoints"
    deadline = time.time() + 600
    while not any(checkpoints.glob("checkpoint-*/trainer_state.json")):
        assert time.time() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.2)
    subprocess.run(["scontrol", "requeue", job], check=True)
    res = run_experiment(slurm_grid(**{"build.methods": "[cft]", "train.token_budget": 400000,
                                       "train.batch_size": 2, "train.save_steps": 5}), run)
    assert res["failed"] == [], read_json(run / "cells.json")
    log = read_json(run / "models" / "cft-s0" / "train_log.json")
    assert log["resumed_from"] and "checkpoint-" in log["resumed_from"]
    assert log["steps"] == log["planned_steps"]
