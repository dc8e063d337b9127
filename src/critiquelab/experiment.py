"""Experiments: a grid of models x methods x seeds x data sizes x noisy-solution sources x teachers,
every cell fine-tuned from its model's base with the same token budget and evaluated on the same items.

    critiquelab experiment --config recipes/demo-full.yaml --out runs/full
    critiquelab demo --preset fast --out runs/demo        # the demo is a preset experiment

This module is the orchestrator: it plans the grid (grid.py: its axes, cells and checks), runs the
shared stages itself (world, bases, data per model x source x teacher x size, critics), hands each
cell to the executor (executors.py) as a job that cell.py runs, and writes the report. With
`lr_grid`, each model x method x data setting first trains its first seed at every rate of the
grid, keeps the rate whose model scores best on the validation split (`train.select_best_on`, which
also picks each run's checkpoint on validation), and trains the other seeds at that rate: the test
split never chooses anything. Everything is checked before anything runs.

Run directory (stages hand off through these files):
    world/                                   the synthetic world's splits
    data/[<model>/]<source>/solutions.jsonl  noisy solutions, one file per source (per model when several)
    data/<source>/<teacher>/critique/        the critique store of that source x teacher
    data/<source>/<teacher>/solve/           the teacher's own solutions (only for sft_teacher)
    data/<source>/<teacher>/refine/          the teacher's refinements of the solutions from their critiques (only for cgd)
    data/<source>/<teacher>/<size>/          training sets `<method>.jsonl` on the first <size> questions
    models/<cell>[-lr<rate>]/  eval/<cell>/  critic/<cell>/
    jobs/<cell>.json  jobs/<cell>.result.json  a cell's job spec and result (executors.py); logs/, slurm/
    cells.json  regime.json  stages/<stage>.json  manifest.json  report.{md,html,json}  *.png

The world is made only when something uses it (`needs_world`): an experiment whose sources are all
imported, whose bases are all given and whose benchmarks are all real makes none. The cells run on
`experiment.executor` (local, subprocess or slurm; executors.py); only this module writes cells.json.

Each stage writes `stages/<name>.json` when it starts and again when it ends; a stage whose
finished record matches its inputs is skipped, one whose inputs changed starts from scratch, and an
interrupted one resumes (the stages themselves resume item by item). A cell that fails is recorded
in `cells.json` with its error and the others go on; a cell whose training set came out empty (say
SFT-verified when the teacher accepted no solution) is recorded as skipped, with the reason.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

from critiquelab.build import METHODS, filter_questions, read_solutions, run_build
from critiquelab.cell import Run, Stages, exclusive, probe_cell, train_key
from critiquelab.config import CritiqueConfig, RunConfig, SampleConfig, key_of, load_config
from critiquelab.critic import run_eval_critic
from critiquelab.critique import run_critique
from critiquelab.executors import Job, check_executor, run_jobs
from critiquelab.grid import Cell, Plan, map_models, needs_world, plan_experiment
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
from critiquelab.machine import differences, weights_key
from critiquelab.methods import TABLE
from critiquelab.pretrain import SHIPPED, cached_base_model, critique_style_of
from critiquelab.regime import regime_stats, setting_solutions
from critiquelab.report import write_report
from critiquelab.rl import RL_METHODS
from critiquelab.sample import run_sample, run_seeds
from critiquelab.world import write_world

__all__ = ["PRESETS", "plan_experiment", "plan_line", "preset_config", "recipes_dir", "run_experiment", "summary_line"]

log = logging.getLogger(__name__)

PRESETS = {"fast": "demo-fast.yaml", "full": "demo-full.yaml", "gpu": "demo-gpu.yaml"}


def recipes_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "recipes"


def preset_config(preset: str, overrides: list[str] | None = None) -> RunConfig:
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r} (valid: {', '.join(PRESETS)})")
    return load_config(RunConfig, recipes_dir() / PRESETS[preset], overrides)

# ---------------------------------------------------------------------------------------------
# The run


def run_experiment(cfg: RunConfig, out_dir: str | Path, bench_dir: str | Path | None = None,
                   only_models: list[str] | None = None) -> dict:
    """Run (or resume) the grid; return {"report": path, "failed": [cell names]}.

    `only_models`: run only these entries of the model axis now (say, one per machine, into copies of
    the same run dir); the other models' finished cells, regime and base records are kept."""
    plan = plan_experiment(cfg, bench_dir)
    only_models = list(dict.fromkeys(only_models or [])) or None
    if only_models and (unknown := [m for m in only_models if m not in plan.models]):
        raise UserError(f"--models: {unknown} are not in the experiment's models ({', '.join(plan.models)})")
    check_executor(cfg.experiment)
    t_start, prov = time.time(), provenance()  # the code and machine this run starts with
    _adopt_legacy_run(Path(out_dir))
    with output_dir(out_dir, "experiment") as (run_dir, _), exclusive(
            run_dir / ".lock", f"--out {run_dir}: another critiquelab experiment is running in it; wait for it or stop it"):
        return _run_grid(cfg, plan, run_dir, bench_dir, t_start, prov, only_models or list(plan.models))


def _adopt_legacy_run(path: Path) -> None:
    """A run directory from before output markers (it has stages/ and config.json) is ours."""
    if path.is_dir() and not (path / MARKER).exists() and (path / "stages").is_dir() and (path / "config.json").is_file():
        write_json(path / MARKER, {"kind": "experiment", "fingerprint": None, "complete": False, "adopted": True})


def _bases(cfg: RunConfig, plan: Plan, world_dir: Path, stages: Stages,
           active: list[str]) -> tuple[dict[str, str], dict[str, dict]]:
    """Each active model's base: given, cached, or pretrained now; and what the report says about it."""
    bases, info = {}, {}
    for name, spec in plan.models.items():
        if name not in active:
            continue
        if spec.base_model:
            bases[name], cached = spec.base_model, True
        else:
            t0 = time.time()
            path, cached = cached_base_model(world_dir, cfg.world, spec.model, spec.pretrain)
            bases[name] = str(path)
            stages.timings["pretrain" + (f"-{name}" if len(plan.models) > 1 else "")] = (
                0.0 if cached else round(time.time() - t0, 1))
        stats_file = Path(bases[name]) / "critiquelab_pretrain.json"
        record = read_json(stats_file) if stats_file.is_file() else {}
        stats, built_with = record.get("stats", {}), record.get("built_with")
        # a base built with other versions or CPU kernels than this run's is said, never passed over
        elsewhere = differences(built_with, weights_key()) if built_with else []
        if elsewhere:
            log.warning("base model %s was built with other versions or CPU kernels than this run's (%s): its "
                        "weights are not the ones this machine would pretrain", name, "; ".join(elsewhere))
        info[name] = {"base": bases[name], "cached": cached, "params": stats.get("params"),
                      "built_with": built_with, "built_elsewhere": elsewhere,
                      "shipped": Path(bases[name]).parent == SHIPPED,
                      "pretrain_tokens": None if spec.base_model else spec.pretrain.tokens,
                      "critique_share": None if spec.base_model else spec.pretrain.critique_share,
                      "model": None if spec.base_model else asdict(spec.model),
                      "pretrain": None if spec.base_model else asdict(spec.pretrain)}
        log.info("base model %s: %s (%s)", name, bases[name], "given or cached" if cached else "pretrained now")
    return bases, info


def _run_grid(cfg: RunConfig, plan: Plan, run_dir: Path, bench_dir, t_start: float, prov: dict,
              active: list[str]) -> dict:
    stages = Stages(run_dir)
    write_json(run_dir / "config.json", asdict(cfg))
    world_dir = run_dir / "world"
    if needs_world(cfg, plan):
        stages.run("world", key_of(cfg.world), lambda: write_world(cfg.world, world_dir), outputs=(world_dir,))
    else:
        log.info("no world: every source is imported, every base given and every benchmark real")
    bases, models_info = _bases(cfg, plan, world_dir, stages, active)
    r = Run(cfg, run_dir, world_dir, bases, stages, bench_dir, many=len(plan.models) > 1, aux=plan.aux)
    # What earlier invocations with other `--models` left: their cells' status, regime and bases.
    old = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").is_file() else {}
    old_manifest, old_timings = old.get("manifest", {}), old.get("timings", {})
    # (cells.json is rewritten as each cell lands, so an interrupted invocation's finished cells are kept too)
    old_cells = {c["name"]: c for c in read_json(run_dir / "cells.json")} if (run_dir / "cells.json").is_file() else {}
    for mdl in plan.models:
        if mdl not in active and (earlier := (old_manifest.get("models") or {}).get(mdl)):
            models_info[mdl] = earlier

    # Data: solutions per model x source, critiques per source x teacher, training sets per data size.
    data: dict[tuple, tuple[Path, dict] | str] = {}  # (model, source, teacher, size) -> (dir, key) or an error
    regime = [g for g in (read_json(run_dir / "regime.json") if (run_dir / "regime.json").is_file() else [])
              if g.get("model") not in active]
    for mdl in active:
        for src, scfg in plan.sources.items():
            for tch, tcfg in plan.teachers.items():
                for size in plan.sizes:
                    setting = (mdl, src, tch, size)
                    try:
                        data[setting] = _data(r, mdl, src, scfg, tch, tcfg, size)
                    except Exception as e:  # noqa: BLE001  (recorded; the cells that need it fail, others go on)
                        data[setting] = f"data for {'/'.join(map(str, setting))}: {type(e).__name__}: {e}"
                        log.error("%s", data[setting])
                        continue
                    try:  # a statistic for the report: it never fails the setting
                        regime.append({"model": mdl, "source": src, "teacher": tch, "data_size": size,
                                       **regime_stats(data[setting][0], scfg, tcfg, cfg)})
                    except Exception as e:  # noqa: BLE001
                        log.warning("regime of %s not measured: %s: %s", "/".join(map(str, setting)), type(e).__name__, e)
    write_json(run_dir / "regime.json", regime)

    # Cells: each a job of the executor (executors.py). With lr_grid, the first seed of each group
    # tunes the rate its other seeds use, so those run in a second wave; a method that starts from
    # another's cell (cft_crl from cft: `starts_from` in methods.py) runs in a third.
    status: dict[str, dict] = {c.name: {k: v for k, v in old_cells[c.name].items() if k not in asdict(c)}
                               for c in plan.cells if c.model not in active and c.name in old_cells}
    weights: dict[str, dict] = {}  # cell -> the key of its weights (for the stages that use them)
    mine = [c for c in plan.cells if c.model in active and not TABLE[c.method].starts_from]
    first = [c for c in mine if c.method == "base" or not cfg.lr_grid or c.seed == cfg.seeds[0]]
    def save() -> None:
        write_json(run_dir / "cells.json", [{**asdict(c), **status.get(c.name, {"status": "pending"})}
                                            for c in plan.cells])

    for wave in (first, [c for c in mine if c not in first],
                 [c for c in plan.cells if c.model in active and TABLE[c.method].starts_from]):
        pending = _run_cells(r, wave, data, status, weights, save)
        if pending:
            log.info("%d cells still queued or running on Slurm; rerun to collect them", len(pending))
            return {"report": None, "failed": [], "pending": pending}
    _critics(r, plan, status, weights, active)

    stages.timings["total"] = round(time.time() - t_start, 1)
    sha = {f"world/{f.name}": sha256_file(f) for f in sorted(world_dir.glob("*.jsonl"))}
    sha.update({str(f.relative_to(run_dir)): sha256_file(f) for f in sorted((run_dir / "data").rglob("*.jsonl"))
                if f.parent.name not in ("critique", "solve", "refine") and not f.name.endswith(".solutions.jsonl")})
    sha.update({k: v for k, v in (old_manifest.get("sha256") or {}).items() if k.startswith("base_model-")
                and k.removeprefix("base_model-") not in active})
    for mdl, base in bases.items():
        if Path(base).is_dir():
            sha["base_model" + r.suffix(mdl)] = sha256_dir(base)
    all_bases = {m: i["base"] for m, i in models_info.items()}
    write_json(run_dir / "manifest.json", {
        "manifest": {"provenance": prov, "name": cfg.name, "seeds": cfg.seeds,
                     "base_model": next(iter(all_bases.values())) if len(all_bases) == 1 else all_bases,
                     "base_model_cached": all(m["cached"] for m in models_info.values()), "models": models_info,
                     "lr_grid": cfg.lr_grid, "sha256": sha, "config": asdict(cfg)},
        "timings": {**{k: v for k, v in old_timings.items() if k != "total"}, **stages.timings}})
    failed = [c.name for c in plan.cells if c.model in active and status.get(c.name, {}).get("status") == "failed"]
    elsewhere = {m: i["built_elsewhere"] for m, i in models_info.items() if i.get("built_elsewhere")}
    return {"report": write_report(run_dir), "failed": failed, "pending": [], "bases_built_elsewhere": elsewhere}


def summary_line(res: dict, out: str | Path) -> str:
    """`experiment`'s (and `demo`'s) one-line summary of `run_experiment`'s result: the report and
    the failed cells, or the cells still on Slurm."""
    if res["pending"]:
        return (f"{len(res['pending'])} cell(s) queued or running on Slurm ({out}/jobs/*.slurm.json); "
                "rerun the same command to collect them and write the report")
    report = Path(res["report"])
    line = f"report: {report} (and {report.with_suffix('.html')}, {report.with_suffix('.json')})"
    if res["failed"]:
        line += (f"; {len(res['failed'])} cell(s) FAILED: {', '.join(res['failed'])} "
                 f"(errors in {report.parent / 'cells.json'}; rerun to retry them)")
    for model, diffs in (res.get("bases_built_elsewhere") or {}).items():
        line += f"; base {model} was built with other versions or CPU kernels ({'; '.join(diffs)})"
    return line


def plan_line(cfg: RunConfig, plan: Plan) -> str:
    """`experiment --dry-run`'s one-line summary: the grid's cells and its axes."""
    return (f"{len(plan.cells)} cells ({len(plan.models)} model(s), {len(plan.sources)} source(s), "
            f"{len(plan.teachers)} teacher(s), {len(plan.sizes)} data size(s), {len(cfg.seeds)} seed(s)); nothing run")


def _data(r: Run, mdl: str, src: str, scfg: SampleConfig, tch: str, tcfg: CritiqueConfig,
          size: int | None) -> tuple[Path, dict]:
    """Solutions from `src`, critiques by `tch`, training sets on `size` questions: each stage cached."""
    scfg = map_models(scfg, "generators", lambda _, model: r.at(model, mdl))  # @name -> its directory
    tcfg = map_models(tcfg, "panel", lambda _, model: r.at(model, mdl))
    if tcfg.teacher == "checker" and tcfg.checker_style is None:  # the style the student's base read
        tcfg = replace(tcfg, checker_style=critique_style_of(r.bases[mdl]))
    # Imported rows are the same for every base: with several models they are critiqued (and paid
    # for) and built once, under data/<source>/, and every model trains on the same sets.
    shared = scfg.source == "import" and r.many
    base, t = r.bases[mdl], "" if shared else r.tag(mdl)
    ddir = r.dir / "data" if shared else r.data_dir(mdl)
    sols, tdir, label = ddir / src / "solutions.jsonl", ddir / src / tch, f"n{size}" if size else "all"
    if scfg.seed_problem:  # one-shot CFT: the problem the base solves `seed_problem`-ly often, by pass rate
        probe = replace(scfg, source="model", model=None, generators={}, problem_ids=[], seed_problem=None,
                        n_per_problem=scfg.seed_k, n_problems=scfg.seed_candidates)
        seeds = ddir / src / "seeds"
        picks = r.stages.run(f"seeds-{t}{src}", {"world": key_of(r.cfg.world), "base": base, "probe": key_of(probe)},
                             lambda: run_seeds(scfg.problems or r.world_dir / "train.jsonl", seeds, probe, base,
                                                     vllm=r.cfg.vllm)["picks"],
                             outputs=(seeds,))
        scfg = replace(scfg, problem_ids=[picks[scfg.seed_problem]], seed_problem=None)
    k_sample = {"world": key_of(r.cfg.world), "base": "every model" if shared else base, "sample": key_of(scfg)}
    r.stages.run(f"sample-{t}{src}", k_sample, lambda: run_sample(scfg.problems or r.world_dir / "train.jsonl", sols, scfg,
                                                                  scfg.model or base, vllm=r.cfg.vllm),
                 outputs=(sols, sols.with_name(sols.name + ".partial")))
    k_crit = {"sample": k_sample, "critique": key_of(tcfg)}
    r.stages.run(f"critique-{t}{src}-{tch}", k_crit, lambda: run_critique(sols, tdir / "critique", tcfg, vllm=r.cfg.vllm),
                 outputs=(tdir / "critique",))
    solved = None
    if any(TABLE[m].teacher_solves for m in r.cfg.build.methods):  # the same teacher also writes its own solutions
        solver = replace(tcfg, prompt="solve_paper")
        r.stages.run(f"solve-{t}{src}-{tch}", {**k_crit, "solve": key_of(solver)},
                     lambda: run_critique(sols, tdir / "solve", solver, vllm=r.cfg.vllm), outputs=(tdir / "solve",))
        solved = tdir / "solve" / "solutions.jsonl"
    refined = None
    if any(TABLE[m].teacher_refines for m in r.cfg.build.methods):  # the same teacher refines from its critiques
        refiner, critiques = replace(tcfg, prompt=tcfg.refine_prompt), tdir / "critique" / "critiques.jsonl"
        r.stages.run(f"refine-{t}{src}-{tch}", {**k_crit, "refine": key_of(refiner)},
                     lambda: run_critique(sols, tdir / "refine", refiner, critiques=critiques, vllm=r.cfg.vllm),
                     outputs=(tdir / "refine",))
        refined = tdir / "refine" / "refined.jsonl"
    build = replace(r.cfg.build, methods=[m for m in r.cfg.build.methods if m in METHODS])  # (RL: no dataset)
    k_build = {"critique": k_crit, "build": key_of(build), "size": size}
    r.stages.run(f"build-{t}{src}-{tch}-{label}", k_build, lambda: run_build(
        _subset(sols, size, tdir / f"{label}.solutions.jsonl"), tdir / "critique" / "critiques.jsonl", tdir / label,
        build, bench_dir=r.bench_dir, teacher_solutions=solved, allow_empty=True, refined=refined),
        outputs=(tdir / label,))
    if set(r.cfg.build.methods) & set(RL_METHODS):  # RL's fixed pool: the setting's solutions through build's filters
        pool = tdir / label / "rl_pool.jsonl"
        r.stages.run(f"rl-pool-{t}{src}-{tch}-{label}", {"build": k_build}, lambda: write_jsonl(
            pool, filter_questions(read_solutions(setting_solutions(tdir / label)), build, r.bench_dir)[0]), outputs=(pool,))
    return tdir / label, k_build


def _subset(solutions: Path, size: int | None, out: Path) -> Path:
    """The solutions of the first `size` questions in a fixed hash order (smaller sizes nest)."""
    if size is None:
        return solutions
    rows = read_jsonl(solutions)
    pids = sorted({r["problem_id"] for r in rows}, key=lambda p: stable_hash(p))[:size]
    keep = set(pids)
    write_jsonl(out, [r for r in rows if r["problem_id"] in keep])
    return out


# ---------------------------------------------------------------------------------------------
# Cells (run by the executor) and critics


def _spec(r: Run, cell: Cell, data, tuned: dict | None) -> tuple[dict, str]:
    """A cell's job spec (all a job needs, in JSON) and the hash of what its result depends on:
    not the executor, the critic, the other cells or how generation is spread over GPUs. `tuned`
    carries a later seed's rate under lr_grid, or a cft_crl cell's start (its cft cell's model)."""
    spec = {"run_dir": str(r.dir), "config": asdict(r.cfg), "cell": asdict(cell),
            "bases": {cell.model: r.bases[cell.model]}, "many": r.many,
            "bench_dir": str(r.bench_dir) if r.bench_dir else None,
            "data": [str(data[0]), data[1]] if isinstance(data, tuple) else data, "tuned": tuned}
    depends = {**{k: v for k, v in spec.items() if k not in ("run_dir", "config")},
               "world": key_of(r.cfg.world), "train": train_key(r.cfg.train), "eval": key_of(r.cfg.eval),
               "lr_grid": r.cfg.lr_grid, "first_seed": r.cfg.seeds[0],
               **({"rl": key_of(r.cfg.rl)} if cell.method in RL_METHODS else {})}
    return spec, stable_hash(depends, 16)


def _start_cell(cell: Cell) -> str:
    """The cell a method with `starts_from` starts from: the same seed and setting (cft_crl-s0: cft-s0)."""
    return TABLE[cell.method].starts_from + cell.name.removeprefix(cell.method)


def _tuned(r: Run, cell: Cell, status: dict, weights: dict) -> dict | None:
    """For a later seed under lr_grid: the rate its first seed's grid picked; for a method that starts
    from another's cell (cft_crl): that cell's model and weights (or why there is none)."""
    if TABLE[cell.method].starts_from:
        start = status.get(_start_cell(cell)) or {}
        if start.get("status") != "ok" or _start_cell(cell) not in weights:
            return {"error": f"its start, cell {_start_cell(cell)}, did not finish ({start.get('status', 'not run')}); "
                             "rerun to retry it"}
        return {"start": str(r.dir / start["model_dir"]), "start_weights": weights[_start_cell(cell)]}
    if not r.cfg.lr_grid or cell.method == "base" or cell.method in RL_METHODS or cell.seed == r.cfg.seeds[0]:
        return None
    probe = status.get(probe_cell(cell, r.cfg.seeds[0])) or {}
    if probe.get("status") != "ok":
        return {"error": f"the learning-rate grid of {probe_cell(cell, r.cfg.seeds[0])} did not finish "
                         f"({probe.get('status', 'not run')}); rerun to retry it"}
    return {"lr": probe["lr"], "lr_scores": probe.get("lr_scores")}


def _run_cells(r: Run, cells: list[Cell], data: dict, status: dict, weights: dict, save) -> list[str]:
    """Run the cells that have no finished result for their current spec; fill `status` and
    `weights` from every cell's result (calling `save` as each one lands). Returns the cells still
    running (Slurm without waiting)."""
    jobs, by_name = [], {}
    for cell in cells:
        spec, h = _spec(r, cell, data.get((cell.model, cell.source, cell.teacher, cell.data_size)),
                        _tuned(r, cell, status, weights))
        path = r.dir / "jobs" / f"{cell.name}.json"
        job = by_name[cell.name] = Job(cell.name, path, h)
        old = read_json(job.result) if job.result.is_file() else None
        if old and old.get("spec") == h and old["status"] in ("ok", "skipped"):
            continue  # finished earlier (by any executor)
        write_json(path, {**spec, "hash": h})
        jobs.append(job)
    if jobs:
        log.info("%d of %d cells to run (executor %s)", len(jobs), len(cells), r.cfg.experiment.executor)

    def collect(name: str) -> dict:
        job = by_name[name]
        res = read_json(job.result)
        if res.get("spec") != job.spec_hash:  # written for other inputs (say, by a job of an earlier spec)
            res = {"status": "failed", "error": "its result was written for other inputs; rerun to run it again"}
        if res.get("weights"):
            weights[name] = res["weights"]
        r.stages.timings.update(res.get("timings") or {})
        status[name] = {k: v for k, v in res.items() if k not in ("spec", "weights", "timings")}
        return status[name]

    done = [0]

    def progress(name: str) -> None:
        done[0] += 1
        log.info("cell %d/%d %s: %s", done[0], len(jobs), name, collect(name)["status"])
        save()

    pending = run_jobs(r.cfg.experiment, jobs, progress)
    for cell in cells:
        if cell.name in pending:
            status[cell.name] = {"status": "running"}
        elif cell.name not in status or cell.name not in {j.name for j in jobs}:
            collect(cell.name)
    save()
    return pending


def _critics(r: Run, plan: Plan, status: dict[str, dict], weights: dict, active: list[str]) -> None:
    """Critic evaluation, per model, of its base and its main group's cells (first source and teacher,
    largest data size) on held-out solutions of validation (`critic.split`) problems written the way the training
    solutions were: by the same injector, or sampled from the model's base."""
    crit = r.cfg.critic
    if crit.n_problems <= 0:
        return
    for mdl in active:
        trained = [c for c in plan.cells if c.model == mdl and c.method != "base"]
        if not trained:
            continue
        main = trained[0]
        src = plan.sources[main.source]
        sols = r.dir / "critic" / f"solutions{r.suffix(mdl)}.jsonl"
        common = {"n_problems": max(crit.n_problems, 1), "n_per_problem": crit.n_samples, "seed": 1}
        scfg = (SampleConfig(source="synthetic", error_rate=src.error_rate, **common) if src.source == "synthetic"
                else SampleConfig(source="model", temperature=crit.temperature,
                                  max_new_tokens=r.cfg.eval.max_new_tokens, **common))
        r.stages.run(f"critic-solutions{r.suffix(mdl)}",
                     {"critic": key_of(crit), "base": r.bases[mdl], "world": key_of(r.cfg.world), "sample": key_of(scfg)},
                     lambda s=scfg, o=sols, b=r.bases[mdl]: run_sample(r.world_dir / f"{crit.split}.jsonl", o, s, b,
                                                                                  vllm=r.cfg.vllm),
                     outputs=(sols, sols.with_name(sols.name + ".partial")))
        for cell in plan.cells:
            same_group = (cell.model, cell.source, cell.teacher, cell.data_size) == (
                mdl, main.source, main.teacher, main.data_size)
            if cell.model != mdl or cell.method not in crit.methods or cell.name not in weights or not (
                    cell.method == "base" or same_group):
                continue
            model = r.bases[mdl] if cell.method == "base" else r.dir / status[cell.name]["model_dir"]
            out = r.dir / "critic" / cell.name
            r.stages.run(f"critic-{cell.name}", {"critic": key_of(crit), "weights": weights[cell.name],
                                                 "solutions": key_of(scfg)},
                         lambda m=model, o=out, s=sols: run_eval_critic(m, s, o, crit, vllm=r.cfg.vllm)["metrics"],
                         outputs=(out,))
