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
    data/<source>/<teacher>/solve/           the teacher's own solutions (only for sft_teacher)
    data/<source>/<teacher>/<size>/          training sets `<method>.jsonl` on the first <size> questions
    models/<cell>/  eval/<cell>/  critic/<cell>/
    cells.json  stages/<stage>.json  manifest.json  report.{md,html,json}  *.png

Each stage writes `stages/<name>.json` when it starts and again when it ends; a stage whose
finished record matches its inputs is skipped, one whose inputs changed starts from scratch, and an
interrupted one resumes (the stages themselves resume item by item). A cell that fails is recorded
in `cells.json` with its error and the others go on; a cell whose training set came out empty (say
SFT-verified when the teacher accepted no solution) is recorded as skipped, with the reason.
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
    MARKER,
    UserError,
    output_dir,
    provenance,
    read_json,
    read_jsonl,
    sha256_dir,
    sha256_file,
    stable_hash,
    write_json,
    write_jsonl,
)
from critiquelab.llm import check_model
from critiquelab.pretrain import cached_base_model
from critiquelab.report import write_report
from critiquelab.sample import read_import, run_sample
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


def _available_questions(s: SampleConfig, cfg: RunConfig) -> int:
    if s.source == "import":
        return len({problem["id"] for problem, _ in read_import(s)})  # counted, not graded
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
    for name, s in sources.items():
        if s.source not in ("model", "synthetic", "import"):
            errors.append(f"sources.{name}.source={s.source!r}: use model, synthetic or import")
    for name, t in teachers.items():
        if t.teacher not in ("checker", "openai", "hf", "vllm"):
            errors.append(f"teachers.{name}.teacher={t.teacher!r}: use checker, openai, hf or vllm")
        elif t.teacher != "checker" and not t.model or t.teacher == "openai" and not t.base_url:
            errors.append(f"teachers.{name}: teacher {t.teacher} needs critique.model"
                          + (" and critique.base_url" if t.teacher == "openai" else ""))
    if cfg.base_model:
        try:
            check_model(cfg.base_model, "base_model")
        except UserError as e:
            errors.append(str(e))
    sizes: list[int | None] = sorted(set(cfg.data_sizes), reverse=True) or [None]
    if any(n is not None and n <= 0 for n in sizes):
        errors.append(f"data_sizes: must be positive, got {cfg.data_sizes}")
    if errors:  # sources may not even be valid yet: report what we have
        raise UserError("invalid experiment: " + "; ".join(errors))
    for name, s in sources.items():
        available = _available_questions(s, cfg)
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


@dataclass
class _Run:
    """What every stage of one experiment shares."""

    cfg: RunConfig
    dir: Path
    world_dir: Path
    base: str
    stages: _Stages
    bench_dir: str | Path | None


def run_experiment(cfg: RunConfig, out_dir: str | Path, bench_dir: str | Path | None = None) -> dict:
    """Run (or resume) the grid; return {"report": path, "failed": [cell names]}."""
    plan = plan_experiment(cfg, bench_dir)
    t_start, prov = time.time(), provenance()  # the code and machine this run starts with
    _adopt_legacy_run(Path(out_dir))
    with output_dir(out_dir, "experiment") as (run_dir, _):
        return _run_grid(cfg, plan, run_dir, bench_dir, t_start, prov)


def _adopt_legacy_run(path: Path) -> None:
    """A run directory from before output markers (it has stages/ and config.json) is ours."""
    if path.is_dir() and not (path / MARKER).exists() and (path / "stages").is_dir() and (path / "config.json").is_file():
        write_json(path / MARKER, {"kind": "experiment", "fingerprint": None, "complete": False, "adopted": True})


def _run_grid(cfg: RunConfig, plan: Plan, run_dir: Path, bench_dir, t_start: float, prov: dict) -> dict:
    stages = _Stages(run_dir)
    write_json(run_dir / "config.json", asdict(cfg))
    world_dir = run_dir / "world"
    stages.run("world", asdict(cfg.world), lambda: write_world(cfg.world, world_dir), outputs=(world_dir,))
    if cfg.base_model:
        base, cached = cfg.base_model, True
    else:
        t0 = time.time()
        path, cached = cached_base_model(world_dir, cfg.world, cfg.model, cfg.pretrain)
        base = str(path)
        stages.timings["pretrain"] = 0.0 if cached else round(time.time() - t0, 1)
    log.info("base model: %s (%s)", base, "given or cached" if cached else "pretrained now")
    r = _Run(cfg, run_dir, world_dir, base, stages, bench_dir)

    # Data: solutions per source, critiques per source x teacher, training sets per data size.
    data: dict[tuple, tuple[Path, dict] | str] = {}  # (source, teacher, size) -> (dir, key) or an error
    for src, scfg in plan.sources.items():
        for tch, tcfg in plan.teachers.items():
            for size in plan.sizes:
                try:
                    data[(src, tch, size)] = _data(r, src, scfg, tch, tcfg, size)
                except Exception as e:  # noqa: BLE001  (recorded; the cells that need it fail, others go on)
                    data[(src, tch, size)] = f"data for {src}/{tch}/{size or 'all'}: {type(e).__name__}: {e}"
                    log.error("%s", data[(src, tch, size)])

    # Cells: fine-tune and evaluate, each on its own.
    status: dict[str, dict] = {}
    weights: dict[str, dict] = {}  # cell -> the key of its weights (for the stages that use them)
    for i, cell in enumerate(plan.cells, start=1):
        log.info("cell %d/%d: %s", i, len(plan.cells), cell.name)
        status[cell.name] = _cell(r, cell, data.get((cell.source, cell.teacher, cell.data_size)), weights)
        write_json(run_dir / "cells.json", [{**asdict(c), **status.get(c.name, {"status": "pending"})}
                                            for c in plan.cells])
    _critics(r, plan, weights)

    stages.timings["total"] = round(time.time() - t_start, 1)
    sha = {f"world/{f.name}": sha256_file(f) for f in sorted(world_dir.glob("*.jsonl"))}
    sha.update({str(f.relative_to(run_dir)): sha256_file(f) for f in sorted((run_dir / "data").rglob("*.jsonl"))
                if f.parent.name not in ("critique", "solve") and not f.name.endswith(".solutions.jsonl")})
    if Path(base).is_dir():
        sha["base_model"] = sha256_dir(base)
    write_json(run_dir / "manifest.json", {
        "manifest": {"provenance": prov, "name": cfg.name, "seeds": cfg.seeds, "base_model": base,
                     "base_model_cached": cached, "sha256": sha, "config": asdict(cfg)},
        "timings": stages.timings})
    failed = [name for name, s in status.items() if s["status"] == "failed"]
    return {"report": write_report(run_dir), "failed": failed}


def _data(r: _Run, src: str, scfg: SampleConfig, tch: str, tcfg: CritiqueConfig, size: int | None) -> tuple[Path, dict]:
    """Solutions from `src`, critiques by `tch`, training sets on `size` questions: each stage cached."""
    sols, tdir, label = r.dir / "data" / src / "solutions.jsonl", r.dir / "data" / src / tch, f"n{size}" if size else "all"
    k_sample = {"world": asdict(r.cfg.world), "base": r.base, "sample": asdict(scfg)}
    r.stages.run(f"sample-{src}", k_sample, lambda: run_sample(r.world_dir / "train.jsonl", sols, scfg,
                                                               scfg.model or r.base),
                 outputs=(sols, sols.with_name(sols.name + ".partial")))
    k_crit = {"sample": k_sample, "critique": asdict(tcfg)}
    r.stages.run(f"critique-{src}-{tch}", k_crit, lambda: run_critique(sols, tdir / "critique", tcfg),
                 outputs=(tdir / "critique",))
    solved = None
    if "sft_teacher" in r.cfg.build.methods:  # the same teacher also writes its own solutions
        solver = replace(tcfg, prompt="solve_paper")
        r.stages.run(f"solve-{src}-{tch}", {**k_crit, "solve": asdict(solver)},
                     lambda: run_critique(sols, tdir / "solve", solver), outputs=(tdir / "solve",))
        solved = tdir / "solve" / "solutions.jsonl"
    k_build = {"critique": k_crit, "build": asdict(r.cfg.build), "size": size}
    r.stages.run(f"build-{src}-{tch}-{label}", k_build, lambda: run_build(
        _subset(sols, size, tdir / f"{label}.solutions.jsonl"), tdir / "critique" / "critiques.jsonl", tdir / label,
        r.cfg.build, bench_dir=r.bench_dir, teacher_solutions=solved, allow_empty=True), outputs=(tdir / label,))
    return tdir / label, k_build


def _cell(r: _Run, cell: Cell, data: tuple[Path, dict] | str | None, weights: dict) -> dict:
    """Fine-tune (not the base) and evaluate one cell; a failure is returned, not raised."""
    if isinstance(data, str) and cell.method != "base":
        return {"status": "failed", "error": data}
    model_dir = r.dir / "models" / cell.name
    try:
        if cell.method == "base":
            weights[cell.name], model = {"base": r.base}, r.base
        else:
            data_dir, data_key = data
            if not read_jsonl(data_dir / f"{cell.method}.jsonl"):  # e.g. sft_verified when no solution passed
                return {"status": "skipped", "error": f"no training examples: the {cell.method} set of "
                        f"{data_dir.relative_to(r.dir)} is empty"}
            train_cfg = replace(r.cfg.train, seed=cell.seed, model=r.base, output_dir=str(model_dir),
                                data=str(data_dir / f"{cell.method}.jsonl"))
            key = {"data": data_key, "train": asdict(train_cfg), "method": cell.method}
            r.stages.run(f"train-{cell.name}", key, lambda: _train_summary(run_train(
                train_cfg, desc=f"train {cell.name}", world_dir=r.world_dir, bench_dir=r.bench_dir)),
                outputs=(model_dir,))
            weights[cell.name], model = key, model_dir
        out = r.dir / "eval" / cell.name
        r.stages.run(f"eval-{cell.name}", {"eval": asdict(r.cfg.eval), "weights": weights[cell.name]},
                     lambda: run_eval(model, out, r.cfg.eval, world_dir=r.world_dir, bench_dir=r.bench_dir)["benchmarks"],
                     outputs=(out,))
        return {"status": "ok"}
    except Exception as e:  # noqa: BLE001  (a failed cell is recorded; the others go on)
        weights.pop(cell.name, None)
        log.error("cell %s failed: %s: %s", cell.name, type(e).__name__, e)
        return {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=-6)}


def _critics(r: _Run, plan: Plan, weights: dict) -> None:
    """Critic evaluation of the main group's cells (first source and teacher, largest data size)."""
    crit = r.cfg.critic
    if crit.n_problems <= 0 or len(plan.cells) < 2:
        return
    main = plan.cells[1]
    sols = r.dir / "critic" / "solutions.jsonl"
    scfg = SampleConfig(source="model", n_problems=max(crit.n_problems, 1), n_per_problem=crit.n_samples,
                        temperature=crit.temperature, max_new_tokens=r.cfg.eval.max_new_tokens, seed=1)
    r.stages.run("critic-solutions", {"critic": asdict(crit), "base": r.base, "world": asdict(r.cfg.world)},
                 lambda: run_sample(r.world_dir / "validation.jsonl", sols, scfg, r.base),
                 outputs=(sols, sols.with_name(sols.name + ".partial")))
    for cell in plan.cells:
        same_group = (cell.source, cell.teacher, cell.data_size) == (main.source, main.teacher, main.data_size)
        if cell.method not in crit.methods or not (cell.method == "base" or same_group) or cell.name not in weights:
            continue
        model, out = (r.base if cell.method == "base" else r.dir / "models" / cell.name), r.dir / "critic" / cell.name
        r.stages.run(f"critic-{cell.name}", {"critic": asdict(crit), "weights": weights[cell.name]},
                     lambda m=model, o=out: run_eval_critic(m, sols, o, crit)["metrics"],
                     outputs=(out,))
