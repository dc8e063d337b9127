"""Sharded training for real: the paper recipes' own launch path (`accelerate launch --config_file
recipes/accelerate/zero3-8gpu.yaml -m critiquelab.cli train --config recipes/qwen2.5-math-7b-cft.yaml`,
DeepSpeed ZeRO-3 from recipes/deepspeed/zero3.json) with 2 CPU processes (gloo), in a loopback-only
network namespace: kill -9 after a checkpoint exists, rerun the same command, and it resumes to the
same end as an uninterrupted run; the saved model loads in one process and generates.

Slow (3.5 to 5.5 minutes on 2 shared cores: three launches of about 50 s each, plus the tiny world
and base model): `make test-slow`, which installs DeepSpeed first."""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from critiquelab.io import read_marker
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[1]


def _unshare_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    r = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True)
    return r.returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                       reason="DeepSpeed is not installed (`pip install --no-build-isolation deepspeed`, "
                              "or `make test-slow`, which installs it)"),
    pytest.mark.skipif(not _unshare_works(),
                       reason="needs `unshare -n` (root) for a loopback-only network namespace: the "
                              "launcher's rendezvous would otherwise listen on every interface"),
]

STEPS, SAVE_STEPS = 12, 3

# The recipe as it is, with only these overrides:
CPU_OVERRIDES = [
    # tensorboard: an optional package, not installed by critiquelab; logging is not under test.
    "train.report_to=none",
    # MATH-500 for checkpoint selection: the tiny world model scores 0 on it and the benchmark files
    # may not be at hand; the tiny world's validation split exercises the same selection path.
    "train.select_best_on=world-validation", "train.select_limit=4", "train.select_max_new_tokens=24",
]
SCALE_OVERRIDES = [  # a tiny model on 60 examples, a few seconds a step on 2 cores
    "train.batch_size=1", "train.grad_accum=2", "train.max_length=512", f"train.max_steps={STEPS}",
    f"train.save_steps={SAVE_STEPS}", "train.lr=1e-3",
]
# Not overridden: ZeRO-3 itself, bf16 (DeepSpeed trains in bf16 on the CPU too), the DeepSpeed JSON's
# "auto" batch sizes, gradient clipping and bucket sizes (the Trainer fills them in from train.*, as
# train.deepspeed names the same JSON), packing, gradient checkpointing, zero3_init_flag.
# Overridden on the launcher's command line: --num_processes 2 (the config file says 8).



def _command(model: Path, data: Path, world: Path, out: Path) -> list[str]:
    launch = [sys.executable, "-m", "accelerate.commands.launch",
              "--config_file", "recipes/accelerate/zero3-8gpu.yaml", "--num_processes", "2",
              "--main_process_port", str(free_port())]  # also names DeepSpeed's /dev/shm segments
    train = ["-m", "critiquelab.cli", "train", "--config", "recipes/qwen2.5-math-7b-cft.yaml",
             "--model", str(model), "--data", str(data), "--out", str(out), "--world", str(world)]
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
            *launch, *train, *CPU_OVERRIDES, *SCALE_OVERRIDES]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONFAULTHANDLER": "1",
       "CUDA_VISIBLE_DEVICES": ""}  # the CPU path (gloo), also on a machine with GPUs


def _run(cmd: list[str], log: Path) -> None:
    with open(log, "w") as f:
        r = subprocess.run(cmd, cwd=REPO, env=ENV, stdout=f, stderr=subprocess.STDOUT, timeout=600)
    assert r.returncode == 0, f"exit status {r.returncode}; the whole log: {log}\n" + log.read_text()[-5000:]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def _kill_tree(proc: subprocess.Popen) -> None:
    """kill -9 the launcher and its workers at once (the workers run in sessions of their own)."""
    for pid in _descendants(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _complete_checkpoints(work: Path) -> list[int]:
    return sorted(int(p.parent.name.split("-")[1]) for p in work.glob("checkpoint-*/trainer_state.json"))


def test_zero3_recipe_on_two_cpu_processes_resumes_after_kill_9(tiny_model, tiny_world, cft_data, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.monotonic()
    ref, out = tmp_path / "ref", tmp_path / "run"
    _run(_command(tiny_model, cft_data, tiny_world, ref), tmp_path / "ref.log")
    t_ref = time.monotonic() - t0

    # The same command, killed with SIGKILL (launcher and both ranks) once a checkpoint is complete.
    proc = subprocess.Popen(_command(tiny_model, cft_data, tiny_world, out), cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = out / "checkpoints"
    deadline = time.time() + 600
    while not _complete_checkpoints(work) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    _kill_tree(proc)
    assert read_marker(out)["complete"] is False, "the run finished before it could be killed"
    done = _complete_checkpoints(work)
    assert done and done[-1] < STEPS
    last = work / f"checkpoint-{done[-1]}"
    # A ZeRO-3 checkpoint: one optimizer/parameter shard per rank, besides the gathered 16-bit weights.
    shards = sorted(p.name for p in last.glob("global_step*/*optim_states.pt"))
    assert len(shards) == 2 and "zero_pp_rank_1" in shards[1], sorted(p.name for p in last.iterdir())
    # A checkpoint a kill cut short mid-save (no trainer_state.json yet): both ranks look at it on the
    # rerun, neither resumes from it, and only rank 0 removes it.
    newest = max(int(p.name.split("-")[1]) for p in work.glob("checkpoint-*"))
    cut = work / f"checkpoint-{newest + 1}"
    shutil.copytree(last, cut)
    (cut / "trainer_state.json").unlink()

    t1 = time.monotonic()
    _run(_command(tiny_model, cft_data, tiny_world, out), tmp_path / "resume.log")
    t_resume = time.monotonic() - t1

    log, ref_log = (json.loads((d / "train_log.json").read_text()) for d in (out, ref))
    assert log["resumed_from"] == str(last) and ref_log["resumed_from"] is None
    assert log["world_size"] == ref_log["world_size"] == 2 and log["global_batch"] == 4
    assert log["steps"] == ref_log["steps"] == STEPS and read_marker(out)["complete"]
    assert [p["step"] for p in log["loss_curve"]] == [p["step"] for p in ref_log["loss_curve"]]
    assert log["tokens"] == ref_log["tokens"]  # the resumed run's earlier part included
    # The resumed run continues the same optimization: its losses after the checkpoint match.
    after = [(a["loss"], b["loss"]) for a, b in zip(log["loss_curve"], ref_log["loss_curve"], strict=True)
             if a["step"] > done[-1]]
    assert after and all(abs(a - b) < 1e-3 for a, b in after), after
    assert not work.exists()
    assert log["selection"]["checkpoint"] in [f"checkpoint-{s}" for s in range(SAVE_STEPS, STEPS + 1, SAVE_STEPS)]
    assert not list((out / "best").glob("global_step*"))  # the optimizer shards are not copied to best/

    # The saved weights are whole (gathered from the shards), load in one process and generate.
    base = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    ref_sd = AutoModelForCausalLM.from_pretrained(ref).state_dict()
    model = AutoModelForCausalLM.from_pretrained(out)
    sd = model.state_dict()
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in base.items()}
    assert any(not torch.equal(sd[k], base[k]) for k in sd)
    for k in sd:
        torch.testing.assert_close(sd[k], ref_sd[k], rtol=1e-3, atol=1e-4)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    gen = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert gen.shape[1] > ids["input_ids"].shape[1]
    assert AutoModelForCausalLM.from_pretrained(out / "best") is not None
    print(f"\nzero3: uninterrupted {t_ref:.0f}s, resume {t_resume:.0f}s; killed after checkpoint-{done[-1]}; "
          f"final loss resumed {log['final_loss']:.6f} vs uninterrupted {ref_log['final_loss']:.6f}")
