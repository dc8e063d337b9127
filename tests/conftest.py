"""Shared fixtures: a tiny world and a tiny from-scratch model, built once per test session."""

from __future__ import annotations

import os
import signal
import time
import warnings
from pathlib import Path

import pytest

from critiquelab.config import ModelConfig, PretrainConfig, RunConfig, WorldConfig, load_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)

REPO = Path(__file__).resolve().parents[1]


def tiny_run_config(**overrides) -> RunConfig:
    """A whole-loop config small enough for seconds on 2 CPU cores."""
    items = [
        "world.n_pretrain=400", "world.n_train=60", "world.n_validation=20", "world.n_test=30",
        "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "model.num_kv_heads=1",
        "model.intermediate_size=64", "model.vocab_size=300",
        "pretrain.tokens=80000", "pretrain.batch_size=4", "pretrain.lr=1e-2",
        "sample.n_problems=40", "sample.max_new_tokens=48", "sample.batch_size=40",
        "train.token_budget=6000", "train.batch_size=8", "train.lr=1e-3",
        "eval.max_new_tokens=48", "eval.batch_size=32",
        "critic.n_problems=6", "critic.n_samples=2", "critic.max_new_tokens=32",
    ]
    items += [f"{k}={v}" for k, v in overrides.items()]
    return load_config(RunConfig, None, items)


@pytest.fixture(scope="session")
def tiny_cfg() -> RunConfig:
    return tiny_run_config()


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory, tiny_cfg) -> Path:
    from critiquelab.world import write_world

    d = tmp_path_factory.mktemp("world")
    write_world(tiny_cfg.world, d)
    return d


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_world, tiny_cfg) -> Path:
    from critiquelab.pretrain import pretrain

    d = tmp_path_factory.mktemp("models") / "base"
    pretrain(tiny_world, d, tiny_cfg.model, tiny_cfg.pretrain)
    return d


def wait_until(done, what: str, seconds: float = 300, proc=None, poll: float = 0.02) -> bool:
    """Poll `done()` until it holds (True), or until `proc` (a Popen being watched) exits first
    (False); after `seconds` fail the test saying what did not happen (and kill `proc`)."""
    deadline = time.monotonic() + seconds
    while not done():
        if proc is not None and proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            if proc is not None and proc.poll() is None:  # its process group when it leads one
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
                proc.wait()
            pytest.fail(f"waited {seconds:g} s for {what}; it did not happen", pytrace=False)
        time.sleep(poll)
    return True


__all__ = ["tiny_run_config", "wait_until", "REPO", "WorldConfig", "ModelConfig", "PretrainConfig"]
