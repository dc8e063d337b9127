"""Shared fixtures: a tiny world and a tiny from-scratch model, built once per test session."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

from critiquelab.config import ModelConfig, PretrainConfig, RunConfig, WorldConfig, load_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# `datasets` caches what it reads (hub benchmarks read from local files in tests): not in the home directory
_DATASETS_CACHE = tempfile.mkdtemp(prefix="critiquelab-test-datasets-")
os.environ["HF_DATASETS_CACHE"] = _DATASETS_CACHE
atexit.register(shutil.rmtree, _DATASETS_CACHE, ignore_errors=True)
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


# `make test-fast` (the inner loop, <= 3 min on 2 cores) leaves these out: real servers, child
# processes, kill -9 and resume, whole grids. They carry the `heavy` mark; `make test` (what CI
# runs) runs them all. Prefixes of node ids (a file with "::" is all its tests), picked with
# `pytest --durations=0`: each took > 10 s of one core (up to 6 min under load).
HEAVY = (
    "test_critique_api.py::",  # a real `transformers serve` teacher behind a fault proxy
    "test_refine_api.py::",  # the same for the refine task, and kill -9
    "test_cgd.py::test_refine_against_an_endpoint_from_the_cli", "test_cgd.py::test_a_cgd_grid",
    "test_executors.py::",  # grids in child processes, accelerate launch
    "test_interrupts.py::",
    "test_readme.py::",
    "test_backends.py::test_openai_backend_against_real_server",
    "test_backends.py::test_samples_of_one_prompt_differ_and_repeat_with_the_seed_on_a_real_server",
    "test_backends.py::test_a_max_new_tokens_beyond_the_context",
    "test_bad_inputs.py::test_real_exit_path_in_a_subprocess",
    "test_experiment.py::test_grid_runs_reports_and_resumes",
    "test_experiment.py::test_a_failed_cell_is_recorded",
    "test_experiment.py::test_sft_teacher_cells",
    "test_experiment.py::test_a_cell_without_training_examples",
    "test_experiment.py::test_a_dying_teacher",
    "test_experiment.py::test_model_axis_lr_grid_and_regime",
    "test_experiment.py::test_an_experiment_on_imported_data",
    "test_one_shot.py::test_seeds_command",
    "test_one_shot.py::test_many_epochs_over_a_small_set",
    "test_one_shot.py::test_a_one_shot_grid",
    "test_pipeline.py::test_demo_runs_end_to_end",
    "test_resume.py::test_sample_killed", "test_resume.py::test_eval_killed", "test_resume.py::test_judge_killed",
    "test_rl.py::test_grpo_trains", "test_rl.py::test_rl_resumes_after_kill_9", "test_rl.py::test_rl_stops_at",
    "test_rl.py::test_rl_methods_in_the_grid",
    "test_train.py::test_kill_9_then_resume", "test_train.py::test_two_process",
)


def pytest_configure(config):
    config.addinivalue_line("markers", "heavy: left out of `make test-fast` (tests/conftest.py HEAVY)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.removeprefix("tests/").startswith(HEAVY):
            item.add_marker(pytest.mark.heavy)


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



def complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_at_random_moments(args: list[str], store: Path, total: int, kills: int, seed: int, env=None) -> list[int]:
    """Start `critiquelab ARGS` `kills` times, each time SIGKILL it once the store holds a random number
    of complete lines (beyond what it had), then append a torn fragment as a crash mid-write leaves
    one. Returns the store's complete lines at each kill that landed before the command finished."""
    rng = random.Random(seed)
    env = env or {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    landed = []
    for _ in range(kills):
        before = complete_lines(store)
        if before >= total:
            break
        target = before + rng.randint(1, max(1, (total - before) // 2))
        proc = subprocess.Popen([sys.executable, "-m", "critiquelab.cli", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the command may finish before the target (then no kill lands); it must not stall
        wait_until(lambda t=target: complete_lines(store) >= t, f"{target} complete lines in {store.name}",
                   proc=proc, poll=0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            landed.append(complete_lines(store))
        proc.wait()
        if store.exists():
            with open(store, "ab") as f:
                f.write(b'{"key": "torn", "id": "half-writ')
    return landed


def checker_critiqued(world: Path, out: Path, n: int) -> tuple[Path, Path]:
    """Injected-error solutions (error rate 0.5) of the first `n` training problems of `world` and the
    exact checker's critiques of them: (out/solutions.jsonl, out/critique/critiques.jsonl)."""
    from critiquelab.config import CritiqueConfig, SampleConfig
    from critiquelab.critique import run_critique
    from critiquelab.sample import run_sample

    sols = out / "solutions.jsonl"
    run_sample(world / "train.jsonl", sols, SampleConfig(source="synthetic", n_problems=n, error_rate=0.5))
    run_critique(sols, out / "critique", CritiqueConfig())
    return sols, out / "critique" / "critiques.jsonl"


@pytest.fixture(scope="session")
def cft_data(tiny_world, tmp_path_factory) -> Path:
    """CFT examples (question + injected-error solution -> the checker's critique) of the tiny world."""
    import random

    from critiquelab.build import cft_example
    from critiquelab.io import read_jsonl, write_jsonl
    from critiquelab.world import check, noisy_solution

    rng = random.Random(0)
    rows = []
    for p in read_jsonl(tiny_world / "train.jsonl"):
        sol, _ = noisy_solution(p, rng)
        rows.append(cft_example("Please critique.", p["question"], sol, check(p, sol).critique))
    path = tmp_path_factory.mktemp("data") / "cft.jsonl"
    write_jsonl(path, rows)
    return path


__all__ = ["tiny_run_config", "wait_until", "REPO", "WorldConfig", "ModelConfig", "PretrainConfig"]
