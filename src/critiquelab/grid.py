"""The grid of an experiment: its cells, checked before anything runs.

    critiquelab experiment --config recipes/demo-full.yaml --out runs/full --dry-run   # the plan only

The grid's axes live in `RunConfig` (config.py): `models` (named model + pretraining configs, each a
cached base; the model-size axis), `build.methods` (each model's base is always evaluated),
`seeds`, `data_sizes` (training questions per cell; the token budget stays fixed, so this axis
measures the value of more distinct questions at equal compute), `sources` and `teachers` (named
overrides of the `sample` / `critique` sections: which model or injector wrote the noisy solutions,
and who wrote the critiques). `plan_experiment` resolves them into a `Plan` and rejects a bad grid
with every reason at once; models named by reference (`@base`, `@<aux_models entry>`) are checked
here and resolved when the data is made (experiment.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from critiquelab.build import METHODS
from critiquelab.config import (
    NAME,
    CritiqueConfig,
    ModelConfig,
    ModelEntry,
    PretrainConfig,
    RunConfig,
    SampleConfig,
    named_sections,
    with_overrides,
)
from critiquelab.io import UserError, read_jsonl
from critiquelab.llm import check_model, visible_gpus
from critiquelab.methods import TABLE
from critiquelab.rl import RL_METHODS, check_groups
from critiquelab.sample import read_import
from critiquelab.sources import BENCHMARKS, WORLD_BENCHMARKS, load_benchmark

__all__ = ["BaseSpec", "Cell", "Plan", "map_models", "needs_world", "plan_experiment"]


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


def map_models(section, table: str, fn):
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
        map_models(s, "generators", note(f"sources.{name}"))
    for name, t in teachers.items():
        map_models(t, "panel", note(f"teachers.{name}"))
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
    if s.problems:  # the source's own problems file, not the world's train split
        if Path(s.problems).is_file():
            return min(s.n_problems, len(read_jsonl(s.problems, what="problems"))), "counted in sample.problems"
        if not offline:
            raise UserError(f"sample.problems={s.problems}: file not found (a problems JSONL: id, question, answer)")
        missing.append(f"sample.problems={s.problems}: not here; planned with sample.n_problems")
        return s.n_problems, "sample.n_problems (the problems file is not here)"
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
    _check_methods(cfg, methods, errors)
    _check_benchmarks(cfg, bench_dir, errors)
    models = _bases_of(cfg, "models", cfg.models or {"default": ModelEntry()}, errors)
    aux = _bases_of(cfg, "aux_models", cfg.aux_models, errors)
    _check_lr_grid(cfg, errors)
    sources = named_sections(cfg.sample, cfg.sources or {"default": {}}, "sources", errors)
    teachers = named_sections(cfg.critique, cfg.teachers or {"default": {}}, "teachers", errors)
    # (named_sections checked each value against its field's spec: a bad source or teacher is an error there)
    _check_data(sources, teachers, aux, errors)
    _check_bases(models, offline, errors, missing)
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
    return Plan(models, sources, teachers, sizes, _cells(cfg, models, sources, teachers, sizes, methods), questions,
                missing, aux)


def _cells(cfg: RunConfig, models: dict, sources: dict, teachers: dict, sizes: list, methods: list[str]) -> list[Cell]:
    """The bases first, then per model x source x teacher x size x seed each method's cell."""
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
    return cells


def _check_methods(cfg: RunConfig, methods: list[str], errors: list[str]) -> None:
    """build.methods (known, their starts, RL's share, budget and one GPU a cell) and critic.methods."""
    unknown = [m for m in methods if m not in METHODS and m not in RL_METHODS]
    if unknown or not methods:
        errors.append(f"build.methods: unknown {unknown or 'none given'} "
                      f"(valid: base, {', '.join(METHODS)}, {', '.join(RL_METHODS)})")
    known = [TABLE[m] for m in dict.fromkeys(methods) if m in TABLE]  # (each named once)
    for m in known:
        if m.starts_from and m.starts_from not in methods:
            errors.append(f"build.methods: {m.name} starts from the {m.starts_from} cell of its seed: "
                          f"add {m.starts_from} to build.methods")
    for m in known:
        if m.kind == "rl" and m.critique_share is None and not 0 < cfg.rl.critique_share < 1:
            errors.append(f"rl.critique_share={cfg.rl.critique_share}: {m.name} mixes critique and solve prompts; "
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


def _check_benchmarks(cfg: RunConfig, bench_dir, errors: list[str]) -> None:
    for b in cfg.eval.benchmarks:
        if b in WORLD_BENCHMARKS:
            continue
        if b not in BENCHMARKS and not b.startswith("hf:"):
            errors.append(f"eval.benchmarks: unknown {b!r} (valid: {', '.join([*WORLD_BENCHMARKS, *BENCHMARKS])})")
            continue
        try:
            load_benchmark(b, bench_dir=bench_dir, answer_type=cfg.eval.answer_type,
                           choice_permutations=cfg.eval.choice_permutations, choice_prompt=cfg.eval.choice_prompt, hf_fields=cfg.eval.hf_fields)
        except UserError as e:
            errors.append(str(e))


def _bases_of(cfg: RunConfig, axis: str, table: dict[str, ModelEntry], errors: list[str]) -> dict[str, BaseSpec]:
    """The entries of `models` or `aux_models`, checked (their names become directory names)."""
    out = {}
    for name, entry in table.items():
        if not NAME.fullmatch(str(name)):
            errors.append(f"{axis}: name {name!r} must be letters, digits, '_' or '.', not starting with '.'")
        base_model = entry.base_model or cfg.base_model
        if base_model and (entry.model or entry.pretrain):
            errors.append(f"{axis}.{name}: model/pretrain settings do nothing for a given base_model; "
                          "give one or the other")
        out[str(name)] = BaseSpec(with_overrides(cfg.model, entry.model, f"{axis}.{name}.model.", errors),
                                  with_overrides(cfg.pretrain, entry.pretrain, f"{axis}.{name}.pretrain.", errors),
                                  base_model)
    return out


def _check_lr_grid(cfg: RunConfig, errors: list[str]) -> None:
    if not cfg.lr_grid:
        return
    if len({f"{lr:g}" for lr in cfg.lr_grid}) != len(cfg.lr_grid) or any(lr <= 0 for lr in cfg.lr_grid):
        errors.append(f"lr_grid: need distinct positive rates (distinct to 6 digits), got {cfg.lr_grid}")
    if not cfg.train.select_best_on or cfg.train.select_best_on in BENCHMARKS or cfg.train.lora \
            or (cfg.train.save_steps <= 0 and not cfg.train.save_epochs):
        errors.append("lr_grid: set train.select_best_on to a validation set (world-validation, or a problems "
                      "JSONL disjoint from the reported benchmarks) and train.save_steps > 0 (full fine-tuning): "
                      "the validation score that picks the rate and each run's checkpoint")


def _check_data(sources: dict[str, SampleConfig], teachers: dict[str, CritiqueConfig], aux: dict[str, BaseSpec],
                errors: list[str]) -> None:
    """Teachers that can write critiques of these sources, and the models named by reference."""
    for name, t in teachers.items():
        if t.teacher != "checker" and not t.model or t.teacher == "openai" and not t.base_url:
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


def _check_bases(models: dict[str, BaseSpec], offline: bool, errors: list[str], missing: list[str]) -> None:
    """Each given base model exists (a hub name is not looked up in a dry run)."""
    for name, spec in models.items():
        if spec.base_model and offline and _hub_name(spec.base_model):
            missing.append(f"models.{name}.base_model={spec.base_model}: not checked (a dry run reads nothing "
                           "from the network)")
        elif spec.base_model:
            try:
                check_model(spec.base_model, "base_model" if name == "default" else f"models.{name}.base_model")
            except UserError as e:
                errors.append(str(e))
