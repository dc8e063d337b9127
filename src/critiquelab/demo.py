"""The offline demo: world -> base model (cached) -> sample -> critique -> build ->
SFT-reference / SFT-noisy / CFT fine-tunes from the same base -> evaluation -> report.

Each stage writes into one run directory and records a small `stages/<stage>.json` last; a
stage whose record matches its config is skipped on rerun, so an interrupted demo resumes.

    critiquelab demo --preset fast --out runs/demo
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

from critiquelab.build import run_build
from critiquelab.config import EvalConfig, RunConfig, SampleConfig, load_config
from critiquelab.critic import run_eval_critic
from critiquelab.critique import run_critique
from critiquelab.evaluate import run_eval
from critiquelab.io import (
    UserError,
    ensure_writable_dir,
    provenance,
    read_json,
    sha256_dir,
    sha256_file,
    stable_hash,
    write_json,
)
from critiquelab.pretrain import cached_base_model
from critiquelab.report import write_report
from critiquelab.sample import run_sample
from critiquelab.train import run_train
from critiquelab.world import write_world

__all__ = ["PRESETS", "recipes_dir", "preset_config", "run_demo"]

log = logging.getLogger(__name__)

PRESETS = {"fast": "demo-fast.yaml", "full": "demo-full.yaml"}


def recipes_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "recipes"


def preset_config(preset: str, overrides: list[str] | None = None) -> RunConfig:
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r} (valid: {', '.join(PRESETS)})")
    return load_config(RunConfig, recipes_dir() / PRESETS[preset], overrides)


class _Stages:
    """Skip a stage whose record (with the same key) exists; time the ones that run."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir / "stages"
        self.timings: dict[str, float] = {}

    def run(self, name: str, key: dict, fn):
        record = self.dir / f"{name}.json"
        h = stable_hash(key)
        if record.exists() and read_json(record).get("key") == h:
            log.info("stage %s: done before, skipped", name)
            result = read_json(record)["result"]
            self.timings[name] = read_json(record)["seconds"]
            return result
        t0 = time.time()
        result = fn()
        seconds = round(time.time() - t0, 1)
        self.timings[name] = seconds
        write_json(record, {"key": h, "result": result, "seconds": seconds})
        log.info("stage %s: %.1fs", name, seconds)
        return result


def run_demo(cfg: RunConfig, out_dir: str | Path, bench_dir: str | Path | None = None) -> Path:
    t_start = time.time()
    run = ensure_writable_dir(out_dir)
    world_dir = run / "world"
    stages = _Stages(run)
    write_json(run / "config.json", asdict(cfg))

    stages.run("world", asdict(cfg.world), lambda: write_world(cfg.world, world_dir))
    t0 = time.time()
    base, cached = cached_base_model(world_dir, cfg.world, cfg.model, cfg.pretrain)
    stages.timings["pretrain"] = 0.0 if cached else round(time.time() - t0, 1)
    log.info("base model: %s (%s)", base, "cached" if cached else "pretrained now")

    key = {"world": asdict(cfg.world), "base": str(base)}
    stages.run("sample", {**key, "sample": asdict(cfg.sample)},
               lambda: run_sample(world_dir / "train.jsonl", run / "solutions.jsonl", cfg.sample, base))
    key["sample"] = asdict(cfg.sample)
    stages.run("critique", {**key, "critique": asdict(cfg.critique)},
               lambda: run_critique(run / "solutions.jsonl", run / "critique", cfg.critique))
    key["critique"] = asdict(cfg.critique)
    stages.run("build", {**key, "build": asdict(cfg.build)},
               lambda: run_build(run / "solutions.jsonl", run / "critique" / "critiques.jsonl", run / "dataset",
                                 cfg.build))
    key["build"] = asdict(cfg.build)

    models, weights = {"base": base}, {"base": str(base)}
    for seed in cfg.seeds:
        for method in cfg.build.methods:
            name = f"{method}-s{seed}"
            train_cfg = replace(cfg.train, seed=seed, model=str(base), data=str(run / "dataset" / f"{method}.jsonl"),
                                output_dir=str(run / "models" / name))
            tkey = {**key, "train": asdict(train_cfg), "method": method}
            stages.run(f"train-{name}", tkey, lambda c=train_cfg, n=name: _train_summary(
                run_train(c, desc=f"train {n}", world_dir=world_dir, bench_dir=bench_dir)))
            models[name], weights[name] = run / "models" / name, stable_hash(tkey)
    for name, path in models.items():
        stages.run(f"eval-{name}", {"eval": asdict(cfg.eval), "weights": weights[name]},
                   lambda p=path, n=name: _eval(p, run / "eval" / n, cfg.eval, world_dir, bench_dir))
    if cfg.critic.n_problems > 0:
        crit = cfg.critic
        sols = run / "critic" / "solutions.jsonl"
        scfg = SampleConfig(source="model", n_problems=crit.n_problems, n_per_problem=crit.n_samples,
                            temperature=crit.temperature, max_new_tokens=cfg.eval.max_new_tokens, seed=1)
        stages.run("critic-solutions", {"critic": asdict(crit), "base": str(base), "world": asdict(cfg.world)},
                   lambda: run_sample(world_dir / "validation.jsonl", sols, scfg, base))
        for name, path in models.items():
            if name.rsplit("-s", 1)[0] in crit.methods:
                stages.run(f"critic-{name}", {"critic": asdict(crit), "weights": weights[name]},
                           lambda p=path, n=name: _critic(p, sols, run / "critic" / n, crit))
    stages.timings["total"] = round(time.time() - t_start, 1)
    write_json(run / "manifest.json", {
        "manifest": {"provenance": provenance(), "seeds": cfg.seeds, "base_model": str(base),
                     "sha256": {"base_model": sha256_dir(base),
                                **{f"world/{f.name}": sha256_file(f) for f in sorted(world_dir.glob("*.jsonl"))},
                                **{f"dataset/{f.name}": sha256_file(f) for f in sorted((run / "dataset").glob("*.jsonl"))}},
                     "base_model_cached": cached, "config": asdict(cfg)},
        "timings": stages.timings})
    return write_report(run)


def _critic(model: Path, solutions: Path, out: Path, crit) -> dict:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    return run_eval_critic(model, solutions, out, max_new_tokens=crit.max_new_tokens)["metrics"]


def _train_summary(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k not in ("loss_curve", "config")}


def _eval(model: Path, out: Path, cfg: EvalConfig, world_dir: Path, bench_dir) -> dict:
    import shutil

    shutil.rmtree(out, ignore_errors=True)  # a fresh model: earlier items belong to older weights
    return run_eval(model, out, cfg, world_dir=world_dir, bench_dir=bench_dir)["benchmarks"]
