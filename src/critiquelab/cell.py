"""One cell of an experiment: its fine-tune (with the learning-rate grid) and its evaluation, from a
job spec `jobs/<cell>.json` written by the orchestrator (experiment.py). This is the executors'
entry point, in any process or machine:

    critiquelab cell RUN/jobs/cft-s0.json

Also here: the stage records (`Stages`: `stages/<name>.json`, a stage whose finished record has the
same key is skipped) and what every stage of one experiment shares (`Run`). A cell's result goes to
`jobs/<cell>.result.json`; only the orchestrator writes `cells.json`. This module imports no
executor.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from critiquelab.config import RunConfig, TrainConfig, key_of, load_config
from critiquelab.evaluate import run_eval
from critiquelab.grid import BaseSpec, Cell
from critiquelab.io import UserError, read_json, read_jsonl, sha256_file, stable_hash, write_json
from critiquelab.llm import visible_gpus
from critiquelab.pretrain import cached_base_model
from critiquelab.rl import RL_METHODS, run_rl
from critiquelab.train import run_train

__all__ = ["Run", "Stages", "exclusive", "probe_cell", "run_cell", "summary_line", "train_key"]

log = logging.getLogger(__name__)


class Stages:
    """Skip a stage whose finished record has the same key; clear the outputs of a stage whose
    inputs changed; time the ones that run."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir / "stages"
        self.timings: dict[str, float] = {}

    def run(self, name: str, key: dict, fn, outputs: tuple[Path, ...] = ()):
        record = self.dir / f"{name}.json"
        h = stable_hash(key)
        old = read_json(record) if record.exists() else None
        if old and old["key"] == h and old.get("done"):
            self.timings[name] = old["seconds"]
            return old["result"]
        if old and old["key"] != h:  # different inputs: what is there belongs to something else
            for p in outputs:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        write_json(record, {"key": h, "done": False})
        t0 = time.time()
        result = fn()
        seconds = round(time.time() - t0, 1)
        self.timings[name] = seconds
        write_json(record, {"key": h, "done": True, "result": result, "seconds": seconds})
        log.info("stage %s: %.1fs", name, seconds)
        return result


@dataclass
class Run:
    """What every stage of one experiment shares."""

    cfg: RunConfig
    dir: Path
    world_dir: Path
    bases: dict[str, str]      # model axis entry -> its base model (dir or hub name), for the models run now
    stages: Stages
    bench_dir: str | Path | None
    many: bool                 # the model axis has several entries
    aux: dict[str, BaseSpec] | None = None  # aux_models (the orchestrator's stages only)

    def at(self, model: str | None, mdl: str) -> str | None:
        """A model named by reference resolved to its directory: `@base` is `mdl`'s base, `@name` an
        aux_models entry (pretrained on the world and cached like any base); other names as given."""
        if not isinstance(model, str) or not model.startswith("@"):
            return model
        if model == "@base":
            return self.bases[mdl]
        spec = self.aux[model[1:]]
        return spec.base_model or str(cached_base_model(self.world_dir, self.cfg.world, spec.model, spec.pretrain)[0])

    def tag(self, model: str) -> str:
        """A model's prefix in stage and directory names: none while the axis has one entry."""
        return f"{model}-" if self.many else ""

    def suffix(self, model: str) -> str:
        """The same as a suffix (file and record names that start with a fixed word)."""
        return f"-{model}" if self.many else ""

    def data_dir(self, model: str) -> Path:
        return self.dir / "data" / model if self.many else self.dir / "data"


# ---------------------------------------------------------------------------------------------
# A cell: training (with the learning-rate grid) and evaluation


@contextmanager
def exclusive(path: Path, what: str):
    """Hold an exclusive lock on `path` (its content: our pid), or refuse with one line."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            raise UserError(f"{what} (pid {f.read().strip() or '?'})") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield


def run_cell(spec_path: str | Path) -> dict:
    """Run one cell from its job spec (the executors' entry point, in any process or machine) and
    write its result beside the spec."""
    spec_path = Path(spec_path)
    spec = read_json(spec_path)
    run_dir = Path(spec["run_dir"])  # as the orchestrator names it: the stage keys hold paths
    cfg = load_config(RunConfig, base=spec["config"])
    r = Run(cfg, run_dir, run_dir / "world", spec["bases"], Stages(run_dir), spec["bench_dir"], spec["many"])
    cell, data = Cell(**spec["cell"]), spec["data"]
    weights: dict = {}
    with exclusive(spec_path.with_name(f"{cell.name}.lock"), f"cell {cell.name} is already running"):
        res = _cell(r, cell, (Path(data[0]), data[1]) if isinstance(data, list) else data, weights, spec["tuned"])
        res = {**res, "spec": spec["hash"], "weights": weights.get(cell.name), "timings": r.stages.timings}
        write_json(spec_path.with_name(f"{cell.name}.result.json"), res)
    return res


def summary_line(res: dict, spec_path: str | Path) -> str:
    """`cell`'s one-line summary of `run_cell`'s result: its status, and the error when it failed."""
    name = Path(spec_path).stem
    return f"cell {name} FAILED: {res['error']}" if res["status"] == "failed" else f"cell {name}: {res['status']}"


def _cell(r: Run, cell: Cell, data: tuple[Path, dict] | str | None, weights: dict,
          tuned: dict | None = None) -> dict:
    """Fine-tune (not the base) and evaluate one cell; a failure is returned, not raised. `tuned`:
    the rate its first seed's grid picked (later seeds never train the grid themselves)."""
    if isinstance(data, str) and cell.method != "base":
        return {"status": "failed", "error": data}
    extra: dict = {}
    try:
        if cell.method == "base":
            weights[cell.name], model = {"base": r.bases[cell.model]}, r.bases[cell.model]
        elif cell.method in RL_METHODS:
            if tuned and "error" in tuned:
                return {"status": "failed", "error": tuned["error"]}
            key, model, summary = _fit_rl(r, cell, data, tuned)
            weights[cell.name] = key
            extra = {"lr": r.cfg.rl.lr, "model_dir": str(model.relative_to(r.dir)), "compute": summary["compute"],
                     **({"start": tuned["start"]} if tuned else {})}
        else:
            data_dir = data[0]
            if not read_jsonl(data_dir / f"{cell.method}.jsonl"):  # e.g. sft_verified when no solution passed
                return {"status": "skipped", "error": f"no training examples: the {cell.method} set of "
                        f"{data_dir.relative_to(r.dir)} is empty"}
            if tuned and "error" in tuned:
                return {"status": "failed", "error": tuned["error"]}
            lr, scores = (tuned["lr"], tuned["lr_scores"]) if tuned else \
                _tuned_lr(r, cell, data) if r.cfg.lr_grid else (r.cfg.train.lr, None)
            key, model, summary = _fit(r, cell, data, lr)
            weights[cell.name] = key
            selection = summary.get("selection") or {}
            extra = {"lr": lr, "model_dir": str(model.relative_to(r.dir)),
                     "validation_accuracy": selection.get("accuracy")
                     if selection and not selection.get("overlaps_reported_benchmark") else None,
                     **({"lr_scores": scores} if scores else {})}
        out = r.dir / "eval" / cell.name
        r.stages.run(f"eval-{cell.name}", {"eval": key_of(r.cfg.eval), "weights": weights[cell.name]},
                     lambda: run_eval(model, out, r.cfg.eval, world_dir=r.world_dir, bench_dir=r.bench_dir,
                                      vllm=r.cfg.vllm)["benchmarks"],
                     outputs=(out,))
        return {"status": "ok", **extra}
    except Exception as e:  # noqa: BLE001  (a failed cell is recorded; the others go on)
        weights.pop(cell.name, None)
        log.error("cell %s failed: %s: %s", cell.name, type(e).__name__, e)
        return {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=-6)}


def _fit(r: Run, cell: Cell, data: tuple[Path, dict], lr: float) -> tuple[dict, Path, dict]:
    """Train one cell at `lr` (cached as a stage): its weights' key, directory and training summary."""
    data_dir, data_key = data
    name = f"{cell.name}-lr{lr:g}" if r.cfg.lr_grid else cell.name
    model_dir = r.dir / "models" / name
    train_cfg = replace(r.cfg.train, seed=cell.seed, lr=lr, model=r.bases[cell.model], output_dir=str(model_dir),
                        data=str(data_dir / f"{cell.method}.jsonl"))
    key = {"data": data_key, "train": train_key(train_cfg), "method": cell.method}
    if train_cfg.launcher == "accelerate":
        fn = lambda: _train_summary(_accelerate(r, train_cfg, name))  # noqa: E731
    else:
        fn = lambda: _train_summary(run_train(train_cfg, desc=f"train {name}", world_dir=r.world_dir,  # noqa: E731
                                              bench_dir=r.bench_dir))
    summary = r.stages.run(f"train-{name}", key, fn, outputs=(model_dir,))
    return key, model_dir, summary


def _fit_rl(r: Run, cell: Cell, data: tuple[Path, dict], start: dict | None) -> tuple[dict, Path, dict]:
    """GRPO for one RL cell (cached as a stage) on its setting's noisy solutions, from its base or (cft_crl)
    its cft cell's model, until `rl.token_budget` (0: `train.token_budget`) generated + trained tokens."""
    data_dir, _ = data
    share = RL_METHODS[cell.method]
    model_dir = r.dir / "models" / cell.name
    cfg = replace(r.cfg.rl, model=start["start"] if start else r.bases[cell.model],
                  solutions=str(data_dir / "rl_pool.jsonl"),  # written by _data's rl-pool stage
                  output_dir=str(model_dir), seed=cell.seed, instruction=r.cfg.build.critique_instruction,
                  system_prompt=r.cfg.build.system_prompt,
                  critique_share=r.cfg.rl.critique_share if share is None else share,
                  token_budget=r.cfg.rl.token_budget or r.cfg.train.token_budget)
    key = {"pool": sha256_file(cfg.solutions), "rl": {k: v for k, v in key_of(cfg).items() if k != "model"},
           "start": start["start_weights"] if start else {"base": r.bases[cell.model]}, "method": cell.method}
    summary = r.stages.run(f"train-{cell.name}", key,
                           lambda: _train_summary(run_rl(cfg, desc=f"rl {cell.name}")), outputs=(model_dir,))
    return key, model_dir, summary


def _train_summary(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k not in ("loss_curve", "curve", "config")}


def train_key(cfg: TrainConfig) -> dict:
    """The settings a fine-tune's result depends on: how it is launched only through its processes."""
    key = key_of(cfg)
    if cfg.launcher != "none":
        key["launch"] = {"launcher": cfg.launcher, "processes": cfg.num_processes or "the cell's GPUs",
                         "config": sha256_file(cfg.accelerate_config) if cfg.accelerate_config else None}
    return key


def _accelerate(r: Run, cfg: TrainConfig, name: str) -> dict:
    """One cell's fine-tune as `accelerate launch ... -m critiquelab.cli train` (multi-GPU, DeepSpeed)."""
    import socket

    import yaml

    recipe = r.dir / "jobs" / f"train-{name}.yaml"
    recipe.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_text(yaml.safe_dump({"train": {**asdict(cfg), "launcher": "none"}}))
    with socket.socket() as sock:  # a free port for this launch's rendezvous (cells may launch side by side)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    processes = cfg.num_processes or len(visible_gpus())
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", str(port)]
    cmd += ["--config_file", cfg.accelerate_config] if cfg.accelerate_config else \
        ["--num_machines", "1", "--main_process_ip", "127.0.0.1"] + (["--multi_gpu"] if processes > 1 else [])
    cmd += ["--num_processes", str(processes)] if processes else []
    cmd += ["-m", "critiquelab.cli", "train", "--config", str(recipe), "--world", str(r.world_dir)]
    cmd += ["--benchmarks-dir", str(r.bench_dir)] if r.bench_dir else []
    log.info("train %s: %s", name, " ".join(cmd))
    done = subprocess.run(cmd, stdout=sys.stdout, stderr=sys.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"accelerate launch exited with status {done.returncode}")
    return read_json(Path(cfg.output_dir) / "train_log.json")


def _tuned_lr(r: Run, cell: Cell, data: tuple[Path, dict]) -> tuple[float, dict[str, float]]:
    """The grid's rate whose first-seed run scores best on validation (ties: the first in the grid)."""
    first = r.cfg.seeds[0]
    probe = replace(cell, seed=first, name=probe_cell(cell, first))
    scores: dict[float, float | None] = {}
    for lr in r.cfg.lr_grid:
        try:
            scores[lr] = _fit(r, probe, data, lr)[2]["selection"]["accuracy"]
        except Exception as e:  # noqa: BLE001  (a rate that fails, say diverges, is out of the running)
            log.error("%s at lr %g failed: %s: %s", probe.name, lr, type(e).__name__, e)
            scores[lr] = None
    ok = [lr for lr in r.cfg.lr_grid if scores[lr] is not None]
    if not ok:
        raise RuntimeError(f"every rate of lr_grid failed for {probe.name}")
    return max(ok, key=scores.__getitem__), {f"{lr:g}": score for lr, score in scores.items()}


def probe_cell(cell: Cell, first_seed: int) -> str:
    """The cell of the first seed whose learning-rate grid picks this cell's rate."""
    return cell.name.removesuffix(f"-s{cell.seed}") + f"-s{first_seed}"
