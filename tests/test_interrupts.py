"""Ctrl-C (SIGINT) and Slurm's preemption (SIGTERM) during `train` and `pretrain`: a checkpoint is
saved before the exit (130), the message says what a rerun does, and the rerun resumes from it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from critiquelab.io import read_marker
from tests.conftest import tiny_run_config

CLI = [sys.executable, "-m", "critiquelab.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}  # log lines unwrapped



def interrupt_once_training(args: list[str], log: Path, sig: int) -> subprocess.CompletedProcess:
    """Start the command, send `sig` once it logs that training began, and wait for its exit."""
    with open(log, "w") as f:
        proc = subprocess.Popen([*CLI, *args], env=ENV, stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while "Ctrl-C or SIGTERM saves a checkpoint" not in log.read_text():
            assert proc.poll() is None, f"exited before training began: {log.read_text()[-2000:]}"
            assert time.time() < deadline, "training did not begin within 300 s"
            time.sleep(0.05)
        proc.send_signal(sig)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(args, proc.returncode, "", log.read_text())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_train_saves_a_checkpoint_and_the_rerun_resumes_from_it(sig, tiny_model, cft_data, tmp_path):
    out = tmp_path / "model"
    # the default wall-clock checkpoints (every 5 min) and no step checkpoints: only the signal saves one
    args = ["train", "--model", str(tiny_model), "--data", str(cft_data), "--out", str(out), "train.token_budget=0",
            "train.max_steps=400", "train.batch_size=4", "train.lr=1e-3"]
    r = interrupt_once_training(args, tmp_path / "first.log", sig)
    assert r.returncode == 130, r.stderr[-2000:]
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(ckpts) == 1 and (ckpts[0] / "trainer_state.json").is_file()
    step = int(ckpts[0].name.split("-")[1])
    assert 0 < step < 400 and read_marker(out)["complete"] is False
    last = r.stderr.strip().splitlines()[-1]
    assert f"stopped by {signal.Signals(sig).name} at step {step} of 400" in last
    assert f"rerun the same command to resume from checkpoint-{step}" in last
    again = subprocess.run([*CLI, *args], env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"from step {step} of 400" in again.stdout  # resumed, not from step 0
    log = json.loads((out / "train_log.json").read_text())
    assert log["resumed_from"].endswith(f"checkpoint-{step}") and log["steps"] == 400
    assert read_marker(out)["complete"] and not (out / "checkpoints").exists()


def test_a_signal_during_pretrain_saves_a_checkpoint_and_the_rerun_resumes(tiny_world, tmp_path):
    tiny = tiny_run_config()
    sizes = [f"model.{k}={getattr(tiny.model, k)}" for k in ("hidden_size", "num_layers", "num_heads", "num_kv_heads",
                                                             "intermediate_size", "vocab_size")]
    args = ["pretrain", "--world", str(tiny_world), "--out", str(tmp_path / "base"), *sizes,
            "pretrain.tokens=40000", "pretrain.batch_size=4"]
    r = interrupt_once_training(args, tmp_path / "first.log", signal.SIGTERM)
    assert r.returncode == 130, r.stderr[-2000:]
    ckpts = list((tmp_path / "base" / "checkpoints").glob("checkpoint-*"))
    assert len(ckpts) == 1
    assert f"rerun the same command to resume from {ckpts[0].name}" in r.stderr.strip().splitlines()[-1]
    again = subprocess.run([*CLI, *args], env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    stats = json.loads((tmp_path / "base" / "critiquelab_pretrain.json").read_text())["stats"]
    assert stats["resumed_from"].endswith(ckpts[0].name)


def test_an_interrupt_before_any_checkpoint_says_the_rerun_starts_over(tmp_path):
    from critiquelab.train import _rerun_note

    assert "starts train over from step 0" in _rerun_note(tmp_path, "train")
