"""Experiments: a grid of methods x seeds x data sizes x noisy-solution sources x teachers, every
cell fine-tuned from the same base model with the same token budget and evaluated on the same items.

    critiquelab experiment --config recipes/demo-full.yaml --out runs/full
    critiquelab demo --preset fast --out runs/demo        # the demo is a preset experiment

The grid's axes live in `RunConfig` (config.py): `build.methods` (the base is always evaluated),
`seeds`, `data_sizes` (training questions per cell; the token budget stays fixed, so this axis
measures the value of more distinct questions at equal compute), `sources` and `teachers` (named
overrides of the `sample` / `critique` sections: which model or injector wrote the noisy solutions,
and who wrote the critiques). Everything is checked before anything runs.

Run directory (stages hand off through these files):
    world/                                   the synthetic world's splits
    data/<source>/solutions.jsonl            noisy solutions, one file per source
    data/<source>/<teacher>/critique/        the critique store of that source x teacher
    data/<source>/<teacher>/<size>/          training sets `<method>.jsonl` on the first <size> questions
    models/<cell>/  eval/<cell>/  critic/<cell>/
    cells.json  stages/<stage>.json  manifest.json  report.{md,html,json}  *.png

Each stage writes `stages/<name>.json` when it starts and again when it ends; a stage whose
finished record matches its inputs is skipped, one whose inputs changed starts from scratch, and an
interrupted one resumes (the stages themselves resume item by item). A cell that fails is recorded
in `cells.json` with its error and the others go on.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from critiquelab.build import METHODS, run_build
from critiquelab.config import CritiqueConfig, RunConfig, SampleConfig, load_config, with_overrides
from critiquelab.critic import run_eval_critic
from critiquelab.critique import run_critique
from critiquelab.evaluate import run_eval
from critiquelab.io import (
    UserError,
    ensure_writable_dir,
    provenance,
    read_json,
    read_jsonl,
    sha256_dir,
    sha256_file,
    stable_hash,
    write_json,
    write_jsonl,
)
from critiquelab.pretrain import cached_base_model
from critiquelab.report import write_report
from critiquelab.sample import import_solutions, run_sample
from critiquelab.sources import BENCHMARKS, WORLD_BENCHMARKS, load_benchmark
from critiquelab.train import run_train
from critiquelab.world import write_world

__all__ = ["PRESETS", "Cell", "Plan", "plan_experiment", "preset_config", "recipes_dir", "run_experiment"]

log = logging.getLogger(__name__)

PRESETS = {"fast": "demo-fast.yaml", "full": "demo-full.yaml"}


def recipes_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "recipes"


def preset_config(preset: str, overrides: list[str] | None = None) -> RunConfig:
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r} (valid: {', '.join(PRESETS)})")
    return load_config(RunConfig, recipes_dir() / PRESETS[preset], overrides)


# ---------------------------------------------------------------------------------------------
# The plan: the grid, checked before anything runs


@dataclass
class Cell:
    name: str                  # directory name under models/, eval/, critic/
    method: str
    seed: int | None = None
    source: str | None = None
    teacher: str | None = None
    data_size: int | None = None   # training questions; None: all of them


@dataclass
class Plan:
    sources: dict[str, SampleConfig]
    teachers: dict[str, CritiqueConfig]
    sizes: list[int | None]
    cells: list[Cell]          # the base first, then the main group (first source and teacher, largest size)


def _available_questions(name: str, s: SampleConfig, cfg: RunConfig) -> int:
    if s.source == "import":
        return len({r["problem_id"] for r in import_solutions(s)})
    return min(s.n_problems, cfg.world.n_train)


def plan_experiment(cfg: RunConfig, bench_dir=None) -> Plan:
    """Resolve the grid and reject a bad one with every reason at once, before anything runs."""
    errors: list[str] = []
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        errors.append(f"seeds: need one or more distinct seeds, got {cfg.seeds}")
    methods = [m for m in cfg.build.methods if m != "base"]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        errors.append(f"build.methods: unknown {unknown or 'none given'} (valid: base, {', '.join(METHODS)})")
    bad_critic = [m for m in cfg.critic.methods if m != "base" and m not in methods]
    if cfg.critic.n_problems > 0 and bad_critic:
        errors.append(f"critic.methods: {bad_critic} are not trained in this experiment")
    for b in cfg.eval.benchmarks:
        if b in WORLD_BENCHMARKS:
            continue
        if b not in BENCHMARKS:
            errors.append(f"eval.benchmarks: unknown {b!r} (valid: {', '.join([*WORLD_BENCHMARKS, *BENCHMARKS])})")
            continue
        try:
            load_benchmark(b, bench_dir=bench_dir)
        except UserError as e:
            errors.append(str(e))

    def named(axis: str, table: dict, base) -> dict:
        out = {}
        for name, overrides in (table or {"default": {}}).items():
            if not re.fullmatch(r"[A-Za-z0-9_.]+", str(name)):
                errors.append(f"{axis}: name {name!r} must be letters, digits, '_' or '.'")
            out[str(name)] = with_overrides(base, overrides, f"{axis}.{name}.", errors)
        return out

    sources = named("sources", cfg.sources, cfg.sample)
    teachers = named("teachers", cfg.teachers, cfg.critique)
    if "sft_teacher" in methods:
        for name, t in teachers.items():
            if t.teacher == "checker":
                errors.append(f"build.methods: sft_teacher needs teacher-written solutions; teacher {name!r} "
                              "(the checker) writes none")
    sizes: list[int | None] = sorted(set(cfg.data_sizes), reverse=True) or [None]
    if any(n is not None and n <= 0 for n in sizes):
        errors.append(f"data_sizes: must be positive, got {cfg.data_sizes}")
    if errors:  # sources may not even be valid yet: report what we have
        raise UserError("invalid experiment: " + "; ".join(errors))
    for name, s in sources.items():
        available = _available_questions(name, s, cfg)
        too_big = [n for n in sizes if n is not None and n > available]
        if too_big:
            errors.append(f"data_sizes {too_big} exceed the {available} training questions of source {name!r} "
                          f"(world.n_train={cfg.world.n_train}, sample.n_problems={s.n_problems})")
    if errors:
        raise UserError("invalid experiment: " + "; ".join(errors))

    many = lambda xs: len(xs) > 1  # noqa: E731  (an axis with one value stays out of the cell names)
    cells = [Cell("base", "base")]
    for src in sources:
        for tch in teachers:
            for size in sizes:
                for seed in cfg.seeds:
                    for m in methods:
                        parts = [m] + [src] * many(sources) + [tch] * many(teachers)
                        parts += [f"n{size}"] * many(sizes) + [f"s{seed}"]
                        cells.append(Cell("-".join(parts), m, seed, src, tch, size))
    return Plan(sources, teachers, sizes, cells)


# ---------------------------------------------------------------------------------------------
# Stage records


class _Stages:
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


def _subset(solutions: Path, size: int | None, out: Path) -> Path:
    """The solutions of the first `size` questions in a fixed hash order (smaller sizes nest)."""
    if size is None:
        return solutions
    rows = read_jsonl(solutions)
    pids = sorted({r["problem_id"] for r in rows}, key=lambda p: stable_hash(p))[:size]
    keep = set(pids)
    write_jsonl(out, [r for r in rows if r["problem_id"] in keep])
    return out


def _train_summary(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k not in ("loss_curve", "config")}


# ---------------------------------------------------------------------------------------------
# The run


def run_experiment(cfg: RunConfig, out_dir: str | Path, bench_dir: str | Path | None = None) -> dict:
    """Run (or resume) the grid; return {"report": path, "failed": [cell names]}."""
    plan = plan_experiment(cfg, bench_dir)
    t_start = time.time()
    run = ensure_writable_dir(out_dir)
    world_dir = run / "world"
    stages = _Stages(run)
    write_json(run / "config.json", asdict(cfg))

    stages.run("world", asdict(cfg.world), lambda: write_world(cfg.world, world_dir))
    if cfg.base_model:
        base, cached = cfg.base_model, True
    else:
        t0 = time.time()
        path, cached = cached_base_model(world_dir, cfg.world, cfg.model, cfg.pretrain)
        base = str(path)
        stages.timings["pretrain"] = 0.0 if cached else round(time.time() - t0, 1)
    log.info("base model: %s (%s)", base, "given or cached" if cached else "pretrained now")

    # Data: solutions per source, critiques per source x teacher, training sets per data size.
    data_dirs: dict[tuple, Path] = {}
    data_keys: dict[tuple, dict] = {}
    data_errors: dict[tuple, str] = {}
    for src, scfg in plan.sources.items():
        sols = run / "data" / src / "solutions.jsonl"
        k_sample = {"world": asdict(cfg.world), "base": base, "sample": asdict(scfg)}
        for tch, tcfg in plan.teachers.items():
            tdir = run / "data" / src / tch
            k_crit = {"sample": k_sample, "critique": asdict(tcfg)}
            for size in plan.sizes:
                label = "all" if size is None else f"n{size}"
                k_build = {"critique": k_crit, "build": asdict(cfg.build), "size": size}
                try:
                    stages.run(f"sample-{src}", k_sample, lambda s=scfg, p=sols: run_sample(
                        world_dir / "train.jsonl", p, s, s.model or base), outputs=(sols,))
                    stages.run(f"critique-{src}-{tch}", k_crit, lambda t=tcfg, p=sols, d=tdir: run_critique(
                        p, d / "critique", t), outputs=(tdir / "critique",))
                    stages.run(f"build-{src}-{tch}-{label}", k_build, lambda p=sols, d=tdir, n=size, lb=label: run_build(
                        _subset(p, n, d / f"{lb}.solutions.jsonl"), d / "critique" / "critiques.jsonl", d / lb,
                        cfg.build, bench_dir=bench_dir), outputs=(tdir / label,))
                    data_dirs[(src, tch, size)], data_keys[(src, tch, size)] = tdir / label, k_build
                except Exception as e:  # noqa: BLE001  (recorded; the cells that need it fail, others go on)
                    data_errors[(src, tch, size)] = f"data for {src}/{tch}/{label}: {type(e).__name__}: {e}"
                    log.error("%s", data_errors[(src, tch, size)])

    # Cells: fine-tune and evaluate, each on its own.
    status: dict[str, dict] = {}
    weights: dict[str, dict] = {}
    for i, cell in enumerate(plan.cells, start=1):
        log.info("cell %d/%d: %s", i, len(plan.cells), cell.name)
        status[cell.name] = _run_cell(cell, cfg, run, world_dir, base, stages, data_dirs, data_keys, data_errors,
                                      weights, bench_dir)
        write_json(run / "cells.json", [{**asdict(c), **status.get(c.name, {"status": "pending"})}
                                        for c in plan.cells])

    # Critics: the main group's cells (first source and teacher, largest data size).
    crit = cfg.critic
    main = plan.cells[1] if len(plan.cells) > 1 else None
    if crit.n_problems > 0 and main is not None:
        sols = run / "critic" / "solutions.jsonl"
        scfg = SampleConfig(source="model", n_problems=crit.n_problems, n_per_problem=crit.n_samples,
                            temperature=crit.temperature, max_new_tokens=cfg.eval.max_new_tokens, seed=1)
        stages.run("critic-solutions", {"critic": asdict(crit), "base": base, "world": asdict(cfg.world)},
                   lambda: run_sample(world_dir / "validation.jsonl", sols, scfg, base), outputs=(sols,))
        for cell in plan.cells:
            same_group = (cell.source, cell.teacher, cell.data_size) == (main.source, main.teacher, main.data_size)
            if cell.method in crit.methods and (cell.method == "base" or same_group) and cell.name in weights:
                out = run / "critic" / cell.name
                stages.run(f"critic-{cell.name}", {"critic": asdict(crit), "weights": weights[cell.name]},
                           lambda c=cell, o=out: run_eval_critic(run / "models" / c.name if c.method != "base" else base,
                                                                 sols, o, max_new_tokens=crit.max_new_tokens)["metrics"],
                           outputs=(out,))

    stages.timings["total"] = round(time.time() - t_start, 1)
    sha = {f"world/{f.name}": sha256_file(f) for f in sorted(world_dir.glob("*.jsonl"))}
    sha.update({str(f.relative_to(run)): sha256_file(f) for f in sorted((run / "data").rglob("*.jsonl"))
                if f.parent.name != "critique" and not f.name.endswith(".solutions.jsonl")})
    if Path(base).is_dir():
        sha["base_model"] = sha256_dir(base)
    write_json(run / "manifest.json", {
        "manifest": {"provenance": provenance(), "name": cfg.name, "seeds": cfg.seeds, "base_model": base,
                     "base_model_cached": cached, "sha256": sha, "config": asdict(cfg)},
        "timings": stages.timings})
    failed = [name for name, s in status.items() if s["status"] == "failed"]
    return {"report": write_report(run), "failed": failed}


def _run_cell(cell: Cell, cfg: RunConfig, run: Path, world_dir: Path, base: str, stages: _Stages,
              data_dirs, data_keys, data_errors, weights, bench_dir) -> dict:
    group = (cell.source, cell.teacher, cell.data_size)
    if cell.method != "base" and group in data_errors:
        return {"status": "failed", "error": data_errors[group]}
    model_dir = run / "models" / cell.name
    try:
        if cell.method == "base":
            weights[cell.name] = {"base": base}
            model = base
        else:
            train_cfg = replace(cfg.train, seed=cell.seed, model=base,
                                data=str(data_dirs[group] / f"{cell.method}.jsonl"), output_dir=str(model_dir))
            key = {"data": data_keys[group], "train": asdict(train_cfg), "method": cell.method}
            stages.run(f"train-{cell.name}", key, lambda: _train_summary(run_train(
                train_cfg, desc=f"train {cell.name}", world_dir=world_dir, bench_dir=bench_dir)),
                outputs=(model_dir, model_dir.with_name(model_dir.name + ".partial")))
            weights[cell.name] = key
            model = model_dir
        out = run / "eval" / cell.name
        stages.run(f"eval-{cell.name}", {"eval": asdict(cfg.eval), "weights": weights[cell.name]},
                   lambda: run_eval(model, out, cfg.eval, world_dir=world_dir, bench_dir=bench_dir)["benchmarks"],
                   outputs=(out,))
        return {"status": "ok"}
    except Exception as e:  # noqa: BLE001  (a failed cell is recorded; the others go on)
        weights.pop(cell.name, None)
        log.error("cell %s failed: %s: %s", cell.name, type(e).__name__, e)
        return {"status": "failed", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(limit=-6)}
