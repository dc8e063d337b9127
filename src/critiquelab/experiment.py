"""Experiments: a grid of models x methods x seeds x data sizes x noisy-solution sources x teachers,
every cell fine-tuned from its model's base with the same token budget and evaluated on the same items.

    critiquelab experiment --config recipes/demo-full.yaml --out runs/full
    critiquelab demo --preset fast --out runs/demo        # the demo is a preset experiment

The grid's axes live in `RunConfig` (config.py): `models` (named model + pretraining configs, each a
cached base; the model-size axis), `build.methods` (each model's base is always evaluated),
`seeds`, `data_sizes` (training questions per cell; the token budget stays fixed, so this axis
measures the value of more distinct questions at equal compute), `sources` and `teachers` (named
overrides of the `sample` / `critique` sections: which model or injector wrote the noisy solutions,
and who wrote the critiques). With `lr_grid`, each model x method x data setting first trains its
first seed at every rate of the grid, keeps the rate whose model scores best on the validation split
(`train.select_best_on`, which also picks each run's checkpoint on validation), and trains the other
seeds at that rate: the test split never chooses anything. Everything is checked before anything runs.

Run directory (stages hand off through these files):
    world/                                   the synthetic world's splits
    data/[<model>/]<source>/solutions.jsonl  noisy solutions, one file per source (per model when several)
    data/<source>/<teacher>/critique/        the critique store of that source x teacher
    data/<source>/<teacher>/solve/           the teacher's own solutions (only for sft_teacher)
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
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from critiquelab.build import METHODS, every_critique, filter_questions, read_solutions, run_build
from critiquelab.config import (
    NAME,
    CritiqueConfig,
    ModelConfig,
    PretrainConfig,
    RunConfig,
    SampleConfig,
    TrainConfig,
    key_of,
    load_config,
    named_sections,
    with_overrides,
)
from critiquelab.critic import run_eval_critic
from critiquelab.critique import input_hash, parse_verdict, run_critique
from critiquelab.evaluate import run_eval
from critiquelab.executors import Job, check_executor, run_jobs
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
from critiquelab.llm import check_model, visible_gpus
from critiquelab.pretrain import cached_base_model
from critiquelab.report import write_report
from critiquelab.rl import RL_METHODS, check_groups, run_rl
from critiquelab.sample import read_import, run_sample, run_seeds
from critiquelab.sources import BENCHMARKS, WORLD_BENCHMARKS, load_benchmark
from critiquelab.train import run_train
from critiquelab.world import write_world

__all__ = ["PRESETS", "BaseSpec", "Cell", "Plan", "plan_experiment", "preset_config", "recipes_dir", "regime_stats",
           "run_experiment"]

log = logging.getLogger(__name__)

PRESETS = {"fast": "demo-fast.yaml", "full": "demo-full.yaml", "gpu": "demo-gpu.yaml"}


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
    model: str | None = None       # the entry of the model axis whose base it starts from


@dataclass
class BaseSpec:
    """One entry of the model axis: a base pretrained on the world, or a given one (`base_model`)."""

    model: ModelConfig
    pretrain: PretrainConfig
    base_model: str | None = None


@dataclass
class Plan:
    models: dict[str, BaseSpec]
    sources: dict[str, SampleConfig]
    teachers: dict[str, CritiqueConfig]
    sizes: list[int | None]
    cells: list[Cell]          # the bases first, then per model its main group (first source and teacher, largest size)
    questions: dict[str, tuple[int, str]]  # source -> (training questions available, where the number comes from)
    missing: list[str]         # offline plans: what is not here to check (an import file, a hub model)
    aux: dict[str, BaseSpec]   # bases that write or critique data but are not fine-tuned (`@name`)


def _map_models(section, table: str, fn):
    """`section` (a sample or critique section) with `fn(where, model)` applied to its `model` and
    to that of each entry of its `table` (`generators` / `panel`) that names one."""
    entries = {n: {**o, "model": fn(f"{table}.{n}.model", o["model"])} if "model" in o else o
               for n, o in getattr(section, table).items()}
    return replace(section, model=fn("model", section.model), **{table: entries})


def _references(sources: dict[str, SampleConfig], teachers: dict[str, CritiqueConfig]) -> list[tuple[str, str]]:
    """(where, "@name") of every model named by reference: `@base` (the cell's own base) or an
    aux_models entry, in a source, its generators, a teacher or its panel."""
    found: list[tuple[str, str]] = []

    def note(prefix: str):
        def f(where: str, model):
            if isinstance(model, str) and model.startswith("@"):
                found.append((f"{prefix}.{where}", model))
            return model
        return f

    for name, s in sources.items():
        _map_models(s, "generators", note(f"sources.{name}"))
    for name, t in teachers.items():
        _map_models(t, "panel", note(f"teachers.{name}"))
    return found


def _available_questions(s: SampleConfig, cfg: RunConfig, offline: bool, missing: list[str]) -> tuple[int, str]:
    if s.source == "import":
        if offline and s.import_path and not Path(s.import_path).exists():
            missing.append(f"sample.import_path={s.import_path}: not here; planned with sample.n_problems")
            return s.n_problems, "sample.n_problems (the import file is not here)"
        n = len({problem["id"] for problem, _ in read_import(s)})  # counted, not graded
        return n, "counted in the import file"
    if s.seed_problem or s.problem_ids:
        return len(s.problem_ids) or 1, "sample.problem_ids / seed_problem"
    return min(s.n_problems, cfg.world.n_train), "world.n_train / sample.n_problems"


def _hub_name(name: str) -> bool:
    """`org/model` that is not a local path: looked up on the hub (not in a dry run)."""
    return not Path(name).exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None


def needs_world(cfg: RunConfig, plan: Plan) -> bool:
    """Whether anything in the grid uses the synthetic world: a source that is not imported, a base
    pretrained on it, a world benchmark, or the critic stage (it samples world validation problems)."""
    return (any(s.source != "import" and not s.problems for s in plan.sources.values())
            or any(not m.base_model for m in plan.models.values())
            or any(b in WORLD_BENCHMARKS for b in [*cfg.eval.benchmarks, cfg.train.select_best_on])
            or cfg.critic.n_problems > 0)


def plan_experiment(cfg: RunConfig, bench_dir=None, offline: bool = False) -> Plan:
    """Resolve the grid and reject a bad one with every reason at once, before anything runs.
    `offline` (a dry run): hub models are not looked up and a missing import file is planned for."""
    errors: list[str] = []
    missing: list[str] = []
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        errors.append(f"seeds: need one or more distinct seeds, got {cfg.seeds}")
    methods = [m for m in cfg.build.methods if m != "base"]
    unknown = [m for m in methods if m not in METHODS and m not in RL_METHODS]
    if unknown or not methods:
        errors.append(f"build.methods: unknown {unknown or 'none given'} "
                      f"(valid: base, {', '.join(METHODS)}, {', '.join(RL_METHODS)})")
    if "cft_crl" in methods and "cft" not in methods:
        errors.append("build.methods: cft_crl starts from the cft cell of its seed: add cft to build.methods")
    if "joint_rl" in methods and not 0 < cfg.rl.critique_share < 1:
        errors.append(f"rl.critique_share={cfg.rl.critique_share}: joint_rl mixes critique and solve prompts; "
                      "give a share between 0 and 1 (Critique-Coder: 0.2)")
    if set(methods) & set(RL_METHODS):
        try:
            check_groups(cfg.rl)
        except UserError as e:
            errors.append(str(e))
        if not (cfg.rl.token_budget or cfg.train.token_budget):
            errors.append("rl.token_budget and train.token_budget are 0: RL cells compare with the others at a token "
                          "budget (generated + trained tokens); set one of them")
        x = cfg.experiment
        one_gpu = {"local": len(visible_gpus()) <= 1, "subprocess": x.gpus_per_cell == 1 or len(visible_gpus()) <= 1,
                   "slurm": x.slurm.gpus_per_node <= 1}.get(x.executor, True)
        if not one_gpu:  # (GRPOTrainer refuses nn.DataParallel; a cell's RL runs in one process)
            errors.append("RL cells train on one GPU each: use experiment.executor=subprocess with "
                          "experiment.gpus_per_cell=1 (or slurm with gpus_per_node=1)")
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

    def check_name(axis: str, name) -> None:  # names become directory names
        if not NAME.fullmatch(str(name)):
            errors.append(f"{axis}: name {name!r} must be letters, digits, '_' or '.', not starting with '.'")

    def bases_of(axis: str, table: dict) -> dict[str, BaseSpec]:
        out = {}
        for name, entry in table.items():
            check_name(axis, name)
            if not isinstance(entry, dict):
                errors.append(f"{axis}.{name}: expected a mapping with model, pretrain or base_model, got {entry!r}")
                continue
            if unknown := sorted(set(entry) - {"model", "pretrain", "base_model"}):
                errors.append(f"{axis}.{name}: unknown key(s) {unknown} (valid: base_model, model, pretrain)")
            if entry.get("base_model", cfg.base_model) and {"model", "pretrain"} & set(entry):
                errors.append(f"{axis}.{name}: model/pretrain settings do nothing for a given base_model; "
                              "give one or the other")
            out[str(name)] = BaseSpec(with_overrides(cfg.model, entry.get("model") or {}, f"{axis}.{name}.model.",
                                                     errors),
                                      with_overrides(cfg.pretrain, entry.get("pretrain") or {},
                                                     f"{axis}.{name}.pretrain.", errors),
                                      entry.get("base_model", cfg.base_model))
        return out

    models = bases_of("models", cfg.models or {"default": {}})
    aux = bases_of("aux_models", cfg.aux_models)
    if cfg.lr_grid:
        if len({f"{lr:g}" for lr in cfg.lr_grid}) != len(cfg.lr_grid) or any(lr <= 0 for lr in cfg.lr_grid):
            errors.append(f"lr_grid: need distinct positive rates (distinct to 6 digits), got {cfg.lr_grid}")
        if not cfg.train.select_best_on or cfg.train.select_best_on in BENCHMARKS or cfg.train.lora \
                or (cfg.train.save_steps <= 0 and not cfg.train.save_epochs):
            errors.append("lr_grid: set train.select_best_on to a validation set (world-validation, or a problems "
                          "JSONL disjoint from the reported benchmarks) and train.save_steps > 0 (full fine-tuning): "
                          "the validation score that picks the rate and each run's checkpoint")
    sources = named_sections(cfg.sample, cfg.sources or {"default": {}}, "sources", errors)
    teachers = named_sections(cfg.critique, cfg.teachers or {"default": {}}, "teachers", errors)
    for name, s in sources.items():
        if s.source not in ("model", "synthetic", "import"):
            errors.append(f"sources.{name}.source={s.source!r}: use model, synthetic or import")
    for name, t in teachers.items():
        if t.teacher not in ("checker", "openai", "hf", "vllm"):
            errors.append(f"teachers.{name}.teacher={t.teacher!r}: use checker, openai, hf or vllm")
        elif t.teacher != "checker" and not t.model or t.teacher == "openai" and not t.base_url:
            errors.append(f"teachers.{name}: teacher {t.teacher} needs critique.model"
                          + (" and critique.base_url" if t.teacher == "openai" else ""))
    for where, ref in _references(sources, teachers):
        if ref != "@base" and ref[1:] not in aux:
            errors.append(f"{where}={ref}: no such aux_models entry (valid: @base, "
                          f"{', '.join('@' + a for a in aux) or 'none defined'})")
    imported = [n for n, s in sources.items() if s.source == "import"]
    for name, t in teachers.items():
        if imported and t.teacher == "checker":
            errors.append(f"teachers.{name}: the checker teacher grades world problems step by step; source(s) "
                          f"{imported} are imported: use critique.teacher=openai, hf or vllm")
    for name, spec in models.items():
        if spec.base_model and offline and _hub_name(spec.base_model):
            missing.append(f"models.{name}.base_model={spec.base_model}: not checked (a dry run reads nothing "
                           "from the network)")
        elif spec.base_model:
            try:
                check_model(spec.base_model, "base_model" if name == "default" else f"models.{name}.base_model")
            except UserError as e:
                errors.append(str(e))
    sizes: list[int | None] = sorted(set(cfg.data_sizes), reverse=True) or [None]
    if any(n is not None and n <= 0 for n in sizes):
        errors.append(f"data_sizes: must be positive, got {cfg.data_sizes}")
    if errors:  # sources may not even be valid yet: report what we have
        raise UserError("invalid experiment: " + "; ".join(errors))
    questions = {name: _available_questions(s, cfg, offline, missing) for name, s in sources.items()}
    for name, s in sources.items():
        available = questions[name][0]
        too_big = [n for n in sizes if n is not None and n > available]
        if too_big:
            errors.append(f"data_sizes {too_big} exceed the {available} training questions of source {name!r} "
                          f"(world.n_train={cfg.world.n_train}, sample.n_problems={s.n_problems})")
    if errors:
        raise UserError("invalid experiment: " + "; ".join(errors))

    many = lambda xs: len(xs) > 1  # noqa: E731  (an axis with one value stays out of the cell names)
    cells = [Cell("-".join(["base"] + [mdl] * many(models)), "base", model=mdl) for mdl in models]
    for mdl in models:
        for src in sources:
            for tch in teachers:
                for size in sizes:
                    for seed in cfg.seeds:
                        for m in methods:
                            parts = [m] + [mdl] * many(models) + [src] * many(sources) + [tch] * many(teachers)
                            parts += [f"n{size}"] * many(sizes) + [f"s{seed}"]
                            cells.append(Cell("-".join(parts), m, seed, src, tch, size, mdl))
    return Plan(models, sources, teachers, sizes, cells, questions, missing, aux)


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
    return {k: v for k, v in stats.items() if k not in ("loss_curve", "curve", "config")}


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class _Run:
    """What every stage of one experiment shares."""

    cfg: RunConfig
    dir: Path
    world_dir: Path
    bases: dict[str, str]      # model axis entry -> its base model (dir or hub name), for the models run now
    stages: _Stages
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
    with output_dir(out_dir, "experiment") as (run_dir, _), _exclusive(
            run_dir / ".lock", f"--out {run_dir}: another critiquelab experiment is running in it; wait for it or stop it"):
        return _run_grid(cfg, plan, run_dir, bench_dir, t_start, prov, only_models or list(plan.models))


def _adopt_legacy_run(path: Path) -> None:
    """A run directory from before output markers (it has stages/ and config.json) is ours."""
    if path.is_dir() and not (path / MARKER).exists() and (path / "stages").is_dir() and (path / "config.json").is_file():
        write_json(path / MARKER, {"kind": "experiment", "fingerprint": None, "complete": False, "adopted": True})


def _bases(cfg: RunConfig, plan: Plan, world_dir: Path, stages: _Stages,
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
        stats = read_json(stats_file)["stats"] if stats_file.is_file() else {}
        info[name] = {"base": bases[name], "cached": cached, "params": stats.get("params"),
                      "pretrain_tokens": None if spec.base_model else spec.pretrain.tokens,
                      "critique_share": None if spec.base_model else spec.pretrain.critique_share,
                      "model": None if spec.base_model else asdict(spec.model),
                      "pretrain": None if spec.base_model else asdict(spec.pretrain)}
        log.info("base model %s: %s (%s)", name, bases[name], "given or cached" if cached else "pretrained now")
    return bases, info


def _run_grid(cfg: RunConfig, plan: Plan, run_dir: Path, bench_dir, t_start: float, prov: dict,
              active: list[str]) -> dict:
    stages = _Stages(run_dir)
    write_json(run_dir / "config.json", asdict(cfg))
    world_dir = run_dir / "world"
    if needs_world(cfg, plan):
        stages.run("world", key_of(cfg.world), lambda: write_world(cfg.world, world_dir), outputs=(world_dir,))
    else:
        log.info("no world: every source is imported, every base given and every benchmark real")
    bases, models_info = _bases(cfg, plan, world_dir, stages, active)
    r = _Run(cfg, run_dir, world_dir, bases, stages, bench_dir, many=len(plan.models) > 1, aux=plan.aux)
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
    # tunes the rate its other seeds use, so those run in a second wave; cft_crl starts from its
    # cft cell, so it runs in a third.
    status: dict[str, dict] = {c.name: {k: v for k, v in old_cells[c.name].items() if k not in asdict(c)}
                               for c in plan.cells if c.model not in active and c.name in old_cells}
    weights: dict[str, dict] = {}  # cell -> the key of its weights (for the stages that use them)
    mine = [c for c in plan.cells if c.model in active and c.method != "cft_crl"]
    first = [c for c in mine if c.method == "base" or not cfg.lr_grid or c.seed == cfg.seeds[0]]
    def save() -> None:
        write_json(run_dir / "cells.json", [{**asdict(c), **status.get(c.name, {"status": "pending"})}
                                            for c in plan.cells])

    for wave in (first, [c for c in mine if c not in first],
                 [c for c in plan.cells if c.model in active and c.method == "cft_crl"]):
        pending = _run_cells(r, wave, data, status, weights, save)
        if pending:
            log.info("%d cells still queued or running on Slurm; rerun to collect them", len(pending))
            return {"report": None, "failed": [], "pending": pending}
    _critics(r, plan, status, weights, active)

    stages.timings["total"] = round(time.time() - t_start, 1)
    sha = {f"world/{f.name}": sha256_file(f) for f in sorted(world_dir.glob("*.jsonl"))}
    sha.update({str(f.relative_to(run_dir)): sha256_file(f) for f in sorted((run_dir / "data").rglob("*.jsonl"))
                if f.parent.name not in ("critique", "solve") and not f.name.endswith(".solutions.jsonl")})
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
    return {"report": write_report(run_dir), "failed": failed, "pending": []}


def _data(r: _Run, mdl: str, src: str, scfg: SampleConfig, tch: str, tcfg: CritiqueConfig,
          size: int | None) -> tuple[Path, dict]:
    """Solutions from `src`, critiques by `tch`, training sets on `size` questions: each stage cached."""
    scfg = _map_models(scfg, "generators", lambda _, model: r.at(model, mdl))  # @name -> its directory
    tcfg = _map_models(tcfg, "panel", lambda _, model: r.at(model, mdl))
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
    if "sft_teacher" in r.cfg.build.methods:  # the same teacher also writes its own solutions
        solver = replace(tcfg, prompt="solve_paper")
        r.stages.run(f"solve-{t}{src}-{tch}", {**k_crit, "solve": key_of(solver)},
                     lambda: run_critique(sols, tdir / "solve", solver, vllm=r.cfg.vllm), outputs=(tdir / "solve",))
        solved = tdir / "solve" / "solutions.jsonl"
    build = replace(r.cfg.build, methods=[m for m in r.cfg.build.methods if m in METHODS])  # (RL: no dataset)
    k_build = {"critique": k_crit, "build": key_of(build), "size": size}
    r.stages.run(f"build-{t}{src}-{tch}-{label}", k_build, lambda: run_build(
        _subset(sols, size, tdir / f"{label}.solutions.jsonl"), tdir / "critique" / "critiques.jsonl", tdir / label,
        build, bench_dir=r.bench_dir, teacher_solutions=solved, allow_empty=True), outputs=(tdir / label,))
    if set(r.cfg.build.methods) & set(RL_METHODS):  # RL's fixed pool: the setting's solutions through build's filters
        pool = tdir / label / "rl_pool.jsonl"
        r.stages.run(f"rl-pool-{t}{src}-{tch}-{label}", {"build": k_build}, lambda: write_jsonl(
            pool, filter_questions(read_solutions(_pool(tdir / label)), build, r.bench_dir)[0]), outputs=(pool,))
    return tdir / label, k_build


# ---------------------------------------------------------------------------------------------
# The data regime (compared with the paper's in the report)


_CORRECTION = re.compile(r"\\boxed\{|correct (final )?answer is|correct steps|should be", re.IGNORECASE)


def _describe_source(s: SampleConfig) -> str:
    if s.generators:
        return f"{len(s.generators)} generators ({', '.join(s.generators)})" + (
            f" on the {s.seed_problem} seed problem" if s.seed_problem else "")
    if s.source == "synthetic":
        return f"the world's error injector (one error in {s.error_rate:.0%} of solutions), not the student"
    if s.source == "import":
        return f"imported from {s.import_path}"
    return (f"model {s.model}" if s.model else "the student's own base model") + f", T={s.temperature:g}"


def _describe_teacher(t: CritiqueConfig) -> str:
    if t.panel:
        return f"a panel of {len(t.panel)} teachers ({', '.join(t.panel)}), every critique counted"
    if t.teacher == "checker":
        return "the exact step checker" + (f", verdict flipped on {t.checker_noise:.0%}" if t.checker_noise else "")
    return f"{t.teacher} model {t.model}"


def regime_stats(data_dir: Path, scfg: SampleConfig, tcfg: CritiqueConfig, cfg: RunConfig) -> dict:
    """The data regime of one training setting, measured from its files: the share of right noisy
    solutions, the teacher's verdicts against the reference grade (its error rate), how many of its
    'wrong' critiques carry a correction, and the CFT set's verdict balance and size."""
    teacher_dir = data_dir.parent
    solutions = read_jsonl(_pool(data_dir))
    graded = [s["correct"] for s in solutions if isinstance(s.get("correct"), bool)]
    critiques = every_critique(teacher_dir / "critique" / "critiques.jsonl")  # every teacher's, of each text
    judged = [(s["correct"], c) for s in solutions if isinstance(s.get("correct"), bool)
              for c in critiques.get((s["id"], input_hash(s)), [])]
    wrong_critiques = [c for _, c in judged if c.get("verdict") == "wrong"]
    cft = read_jsonl(data_dir / "cft.jsonl") if (data_dir / "cft.jsonl").is_file() else []
    verdicts = [parse_verdict(row["completion"][-1]["content"] if isinstance(row["completion"], list)
                              else row["completion"]) for row in cft]
    share = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "solutions": len(solutions), "questions": len({s.get("problem_id") for s in solutions}),
        "share_right": share(graded),
        "written_by": _describe_source(scfg), "teacher": _describe_teacher(tcfg),
        "teacher_error_rate": share([(c.get("verdict") == "right") != ok for ok, c in judged]),
        "corrections_in_wrong_critiques": share([bool(_CORRECTION.search(c.get("critique") or "")) for c in wrong_critiques]),
        "cft_examples": len(cft), "cft_share_wrong": share([v == "wrong" for v in verdicts]),
        "token_budget": cfg.train.token_budget,
    }


# ---------------------------------------------------------------------------------------------
# Cells: training (with the learning-rate grid), evaluation, critics


def _fit(r: _Run, cell: Cell, data: tuple[Path, dict], lr: float) -> tuple[dict, Path, dict]:
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


def _pool(data_dir: Path) -> Path:
    """The noisy solutions a training setting was built from: RL's fixed pool."""
    return data_dir.parent / f"{data_dir.name}.solutions.jsonl" if data_dir.name != "all" else \
        data_dir.parent.parent / "solutions.jsonl"


def _fit_rl(r: _Run, cell: Cell, data: tuple[Path, dict], start: dict | None) -> tuple[dict, Path, dict]:
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


def train_key(cfg: TrainConfig) -> dict:
    """The settings a fine-tune's result depends on: how it is launched only through its processes."""
    key = key_of(cfg)
    if cfg.launcher != "none":
        key["launch"] = {"launcher": cfg.launcher, "processes": cfg.num_processes or "the cell's GPUs",
                         "config": sha256_file(cfg.accelerate_config) if cfg.accelerate_config else None}
    return key


def _accelerate(r: _Run, cfg: TrainConfig, name: str) -> dict:
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


def _tuned_lr(r: _Run, cell: Cell, data: tuple[Path, dict]) -> tuple[float, dict[str, float]]:
    """The grid's rate whose first-seed run scores best on validation (ties: the first in the grid)."""
    first = r.cfg.seeds[0]
    probe = replace(cell, seed=first, name=_probe(cell, first))
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


def _spec(r: _Run, cell: Cell, data, tuned: dict | None) -> tuple[dict, str]:
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


def _probe(cell: Cell, first_seed: int) -> str:
    """The cell of the first seed whose learning-rate grid picks this cell's rate."""
    return cell.name.removesuffix(f"-s{cell.seed}") + f"-s{first_seed}"


def _cft_cell(cell: Cell) -> str:
    return "cft" + cell.name.removeprefix(cell.method)


def _tuned(r: _Run, cell: Cell, status: dict, weights: dict) -> dict | None:
    """For a later seed under lr_grid: the rate its first seed's grid picked; for cft_crl: its cft
    cell's model and weights (or why there is none)."""
    if cell.method == "cft_crl":
        cft = status.get(_cft_cell(cell)) or {}
        if cft.get("status") != "ok" or _cft_cell(cell) not in weights:
            return {"error": f"its start, cell {_cft_cell(cell)}, did not finish ({cft.get('status', 'not run')}); "
                             "rerun to retry it"}
        return {"start": str(r.dir / cft["model_dir"]), "start_weights": weights[_cft_cell(cell)]}
    if not r.cfg.lr_grid or cell.method == "base" or cell.method in RL_METHODS or cell.seed == r.cfg.seeds[0]:
        return None
    probe = status.get(_probe(cell, r.cfg.seeds[0])) or {}
    if probe.get("status") != "ok":
        return {"error": f"the learning-rate grid of {_probe(cell, r.cfg.seeds[0])} did not finish "
                         f"({probe.get('status', 'not run')}); rerun to retry it"}
    return {"lr": probe["lr"], "lr_scores": probe.get("lr_scores")}


def _run_cells(r: _Run, cells: list[Cell], data: dict, status: dict, weights: dict, save) -> list[str]:
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


@contextmanager
def _exclusive(path: Path, what: str):
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
    r = _Run(cfg, run_dir, run_dir / "world", spec["bases"], _Stages(run_dir), spec["bench_dir"], spec["many"])
    cell, data = Cell(**spec["cell"]), spec["data"]
    weights: dict = {}
    with _exclusive(spec_path.with_name(f"{cell.name}.lock"), f"cell {cell.name} is already running"):
        res = _cell(r, cell, (Path(data[0]), data[1]) if isinstance(data, list) else data, weights, spec["tuned"])
        res = {**res, "spec": spec["hash"], "weights": weights.get(cell.name), "timings": r.stages.timings}
        write_json(spec_path.with_name(f"{cell.name}.result.json"), res)
    return res


def _cell(r: _Run, cell: Cell, data: tuple[Path, dict] | str | None, weights: dict,
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


def _critics(r: _Run, plan: Plan, status: dict[str, dict], weights: dict, active: list[str]) -> None:
    """Critic evaluation, per model, of its base and its main group's cells (first source and teacher,
    largest data size) on held-out solutions of validation problems written the way the training
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
                     lambda s=scfg, o=sols, b=r.bases[mdl]: run_sample(r.world_dir / "validation.jsonl", o, s, b,
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
