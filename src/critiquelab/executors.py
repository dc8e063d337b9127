"""Executors: where an experiment's cells run (`experiment.executor`).

The orchestrator (experiment.py) runs the shared stages itself (world, bases, data, critics) and
hands each cell (its fine-tune, with the learning-rate grid, and its evaluation) to an executor as
a job: a spec file `jobs/<cell>.json`. The job writes its stage records under `stages/` and its
result to `jobs/<cell>.result.json`; only the orchestrator writes `cells.json`. So every executor
writes the same run directory and records, and a grid started with one resumes with another.

- `local`: in this process, one cell after another (the default).
- `subprocess`: each cell is `python -m critiquelab.cli cell SPEC` in a child process that logs to
  `logs/<cell>.log`; `parallel_cells` run at once, each pinned to its own GPUs
  (`CUDA_VISIBLE_DEVICES`; on a machine without GPUs, to its share of the CPU threads).
- `slurm`: one job per cell, one job array per wave, submitted through submitit (its files and
  logs under `slurm/`). A job that is preempted or hits its time limit is requeued (submitit's
  checkpointing) and resumes from the cell's last training checkpoint. With `wait: false` the call
  returns once the jobs are queued; a later `experiment` call finds them by their ids in
  `jobs/<cell>.slurm.json`, waits for the ones still queued or running and collects the results.

A job that ends without writing its result (killed, out of memory, cancelled) is recorded as
failed with the tail of its log.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from critiquelab.cell import run_cell
from critiquelab.config import ExperimentConfig, SlurmConfig
from critiquelab.io import Incomplete, UserError, read_json, write_json
from critiquelab.llm import gpu_shares, visible_gpus
from critiquelab.logs import setup_logging

__all__ = ["Job", "run_jobs", "check_executor", "log_tail"]

log = logging.getLogger(__name__)


@dataclass
class Job:
    name: str       # the cell
    spec: Path      # jobs/<cell>.json
    spec_hash: str  # what the job computes from (a result of another spec is not this job's)

    @property
    def result(self) -> Path:
        return self.spec.with_name(f"{self.name}.result.json")

    @property
    def log(self) -> Path:
        return self.spec.parent.parent / "logs" / f"{self.name}.log"


def _slots(cfg: ExperimentConfig) -> list[list[str]]:
    """The GPUs of each of the `parallel_cells` slots (empty lists on a machine without GPUs): the
    same split as data-parallel generation's (llm.gpu_shares)."""
    shares = gpu_shares(cfg.parallel_cells, cfg.gpus_per_cell, "experiment.")
    return [s.split(",") for s in shares] if shares else [[] for _ in range(cfg.parallel_cells)]


def check_executor(cfg: ExperimentConfig) -> None:
    """What the executor needs, checked before anything runs."""
    if cfg.executor == "subprocess":
        gpus = visible_gpus()
        per = cfg.gpus_per_cell or (len(gpus) // cfg.parallel_cells if gpus else 0)
        if gpus and (per == 0 or per * cfg.parallel_cells > len(gpus)):
            raise UserError(f"experiment.parallel_cells={cfg.parallel_cells} x gpus_per_cell="
                            f"{cfg.gpus_per_cell or per} needs more than the {len(gpus)} visible GPUs; lower one")
    if cfg.executor == "slurm":
        if cfg.slurm.nodes > 1:
            raise UserError("experiment.slurm.nodes must be 1: a cell runs on one node (its GPUs through "
                            "gpus_per_node); multi-node cells are not supported yet")
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise UserError("experiment.executor=slurm needs submitit (pip install submitit)") from None
        from shutil import which

        if which("sbatch") is None or which("squeue") is None:
            raise UserError("experiment.executor=slurm: sbatch/squeue not found; run on a Slurm login node "
                            "(or set SLURM_CONF for a local cluster)")


def log_tail(path: Path, lines: int = 30) -> str:
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 16_000))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def _record_death(job: Job, why: str, logs: list[Path]) -> None:
    """A job that ended without a result: failed, with the tail of its logs."""
    tail = "\n".join(t for t in (log_tail(p) for p in logs) if t)
    write_json(job.result, {"status": "failed", "error": f"the job ended without a result: {why}",
                            "log_tail": tail, "spec": job.spec_hash})
    log.error("cell %s: %s", job.name, why)


def run_jobs(cfg: ExperimentConfig, jobs: list[Job], progress=None) -> list[str]:
    """Run `jobs` on the configured executor; return the names still queued or running (only with
    slurm and `wait: false`). `progress(name)` hears of each finished job."""
    if not jobs:
        return []
    if cfg.executor != "slurm":  # (slurm: only for the jobs it submits; a queued job's result is to come)
        for job in jobs:
            job.result.unlink(missing_ok=True)  # an old (failed) result is not this run's
    if cfg.executor == "local":
        for job in jobs:
            run_cell(job.spec)
            if progress:
                progress(job.name)
        return []
    if cfg.executor == "subprocess":
        _subprocesses(cfg, jobs, progress)
        return []
    return _slurm(cfg, jobs, progress)


# ---------------------------------------------------------------------------------------------
# subprocess


def _subprocesses(cfg: ExperimentConfig, jobs: list[Job], progress) -> None:
    slots = _slots(cfg)
    threads = max(1, (os.cpu_count() or 1) // cfg.parallel_cells)
    queue, running = list(jobs), {}  # slot index -> (job, process, log file)
    try:
        while queue or running:
            for i in range(len(slots)):
                if i in running or not queue:
                    continue
                job = queue.pop(0)
                job.log.parent.mkdir(parents=True, exist_ok=True)
                env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                if slots[i]:
                    env["CUDA_VISIBLE_DEVICES"] = ",".join(slots[i])
                else:
                    env["OMP_NUM_THREADS"] = str(threads)
                out = open(job.log, "ab")  # noqa: SIM115  (closed when the job ends)
                cmd = [sys.executable, "-m", "critiquelab.cli", "cell", str(job.spec)]
                log.info("cell %s: started (%s)", job.name,
                         f"GPUs {','.join(slots[i])}" if slots[i] else f"{env['OMP_NUM_THREADS']} CPU threads")
                # its own process group: stopping it stops what it started (accelerate's workers, shards)
                running[i] = (job, subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                                    start_new_session=True), out)
            for i, (job, proc, out) in list(running.items()):
                if proc.poll() is None:
                    continue
                out.close()
                del running[i]
                if not job.result.is_file():
                    _record_death(job, f"exit status {proc.returncode}", [job.log])
                if progress:
                    progress(job.name)
            time.sleep(0.2)
    finally:  # interrupted: stop the children (they resume from their stage records next time)
        for _job, proc, out in running.values():
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
            out.close()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------------------------
# slurm


class _CellJob:
    """The callable a Slurm job runs: one cell. Requeued on preemption or timeout (submitit calls
    `checkpoint`); the cell then resumes from its stage records and training checkpoints."""

    def __init__(self, spec: str):
        self.spec = spec

    def __call__(self) -> str:
        setup_logging(verbose=False)
        return run_cell(Path(self.spec))["status"]

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def _slurm_executor(cfg: SlurmConfig, folder: Path):
    import submitit

    ex = submitit.SlurmExecutor(folder=str(folder / "%j"), max_num_timeout=cfg.max_requeues)
    params = {"time": cfg.time_min, "nodes": cfg.nodes, "cpus_per_task": cfg.cpus_per_task,
              "array_parallelism": cfg.array_parallelism, "setup": list(cfg.setup),
              "additional_parameters": dict(cfg.additional), "stderr_to_stdout": True, "job_name": "critiquelab"}
    optional = {"partition": cfg.partition, "account": cfg.account, "qos": cfg.qos, "constraint": cfg.constraint,
                "gpus_per_node": cfg.gpus_per_node or None, "mem": f"{cfg.mem_gb}GB" if cfg.mem_gb else None}
    ex.update_parameters(**params, **{k: v for k, v in optional.items() if v is not None})
    return ex


def _queued(job_ids: list[str]) -> set[str]:
    """The ids among `job_ids` that Slurm still has queued or running (requeued ones included)."""
    if not job_ids:
        return set()
    r = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True, text=True)
    if r.returncode != 0 and "Invalid job id" not in r.stderr:
        raise Incomplete(f"squeue failed ({r.stderr.strip()}); the jobs keep running: rerun to collect them")
    states = dict(line.split() for line in r.stdout.splitlines() if line.strip())
    return {j for j in job_ids if states.get(j) not in (None, "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                                         "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE")}


def _slurm(cfg: ExperimentConfig, jobs: list[Job], progress) -> list[str]:
    folder = jobs[0].spec.parent.parent / "slurm"
    ids: dict[str, str] = {}  # cell -> Slurm job id
    submit = []
    for job in jobs:  # jobs of this spec submitted by an earlier call and still in the queue are waited for
        rec = job.spec.with_name(f"{job.name}.slurm.json")
        old = read_json(rec) if rec.is_file() else None
        if old and _queued([old["job_id"]]):
            if old.get("spec") == job.spec_hash:
                ids[job.name] = old["job_id"]
                log.info("cell %s: Slurm job %s from an earlier call is still queued or running", job.name,
                         old["job_id"])
                continue
            log.warning("cell %s: cancelling Slurm job %s of its earlier inputs", job.name, old["job_id"])
            subprocess.run(["scancel", old["job_id"]], check=False)
        job.result.unlink(missing_ok=True)
        submit.append(job)
    if submit:
        ex = _slurm_executor(cfg.slurm, folder)
        with ex.batch():  # one job array
            handles = [ex.submit(_CellJob(str(job.spec))) for job in submit]
        for job, h in zip(submit, handles, strict=True):
            ids[job.name] = str(h.job_id)
            write_json(job.spec.with_name(f"{job.name}.slurm.json"),
                       {"job_id": str(h.job_id), "spec": job.spec_hash, "submitted": time.time(),
                        "log": str(folder / str(h.job_id))})
        log.info("submitted %d cells to Slurm (job array %s)", len(submit), str(handles[0].job_id).split("_")[0])
    by_name = {job.name: job for job in jobs}
    while True:
        still = _queued(list(ids.values()))
        for name, job_id in list(ids.items()):
            if job_id in still:
                continue
            job = by_name[name]
            if not job.result.is_file():
                logs = sorted((folder / job_id).glob("*.out")) + sorted((folder / job_id).glob("*.err"))
                _record_death(job, f"Slurm job {job_id} left the queue without a result", logs)
            del ids[name]
            if progress:
                progress(name)
        if not ids or not cfg.wait:
            return list(ids)
        time.sleep(cfg.poll_seconds)
