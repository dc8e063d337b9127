"""Configuration: one dataclass per stage, nested in `RunConfig`; YAML recipes; dotted overrides.

Precedence: dataclass defaults < YAML recipe < `key=value` overrides. A value counts as given
when its key is present, not when it is truthy, so `train.bf16=false` beats a YAML `true`.
Unknown keys and wrongly typed values are all reported at once, before any work starts.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from critiquelab.io import UserError, read_text

__all__ = [
    "WorldConfig", "ModelConfig", "PretrainConfig", "SampleConfig", "CritiqueConfig",
    "BuildConfig", "TrainConfig", "EvalConfig", "CriticConfig", "RLConfig", "VLLMConfig", "SlurmConfig",
    "ExperimentConfig", "RunConfig",
    "load_config", "to_dict", "key_of",
    "with_overrides", "named_sections", "NAME", "check_values", "ConfigError", "CHOICES", "RANGES",
    "DEFAULT_SYSTEM_PROMPT",
]

DEFAULT_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
DEFAULT_CRITIQUE_INSTRUCTION = "Please critique whether the following solution to the question is correct."


class _Checked:
    """Every section checks its values when it is made (see `check_values` below)."""

    def __post_init__(self) -> None:
        check_values(self)


@dataclass
class WorldConfig(_Checked):
    """Synthetic arithmetic word problems (see world.py)."""

    seed: int = 0
    min_steps: int = 2
    max_steps: int = 4
    max_number: int = 30          # operands of + and - are drawn from 1..max_number
    max_factor: int = 4           # operands of * and / are drawn from 2..max_factor
    max_value: int = 400          # every intermediate value stays in 0..max_value
    operations: str = "+-*"       # any subset of "+-*/"
    n_pretrain: int = 20000       # corpus of the from-scratch base model
    n_train: int = 5000           # question pool for sampling, critiques and fine-tuning
    n_validation: int = 200
    n_test: int = 500


@dataclass
class ModelConfig(_Checked):
    """Architecture of the tiny from-scratch model (a real Qwen2ForCausalLM)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    vocab_size: int = 512
    max_position_embeddings: int = 512


@dataclass
class PretrainConfig(_Checked):
    """From-scratch pretraining on the world's train split (budgeted in tokens, not seconds)."""

    tokens: int = 2_000_000
    critique_share: float = 0.25  # share of pretraining documents that are critiques of noisy solutions
    lr: float = 2e-3
    batch_size: int = 8           # small batches: more steps per token, which the tiny model needs
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    seed: int = 0


@dataclass
class SampleConfig(_Checked):
    """Noisy candidate solutions: from a model (`model`), by error injection (`synthetic`), or
    imported from a file / HF dataset (`import`) with a field mapping. `data_parallel` and
    `tensor_parallel` (here and in critique, eval, critic) place the generation on GPUs and are
    in no item's key: see docs/generation-at-scale.md."""

    source: str = "model"         # "model" | "synthetic" | "import"
    model: str | None = None      # model: the sampler (dir or hub name); None = the run's base model
    import_path: str | None = None        # import: JSONL / JSON / parquet / saved HF dataset / hub name
    import_preset: str = "custom"         # import: webinstruct | metamathqa | numinamath | custom
    import_fields: dict[str, str] = field(default_factory=dict)  # ours -> theirs: question, solution, answer, id
    import_split: str = "train"
    n_problems: int = 3000
    n_per_problem: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 160
    batch_size: int = 128
    error_rate: float = 0.5       # synthetic source: share of solutions with an injected error
    seed: int = 0
    problems: str | None = None   # experiment: the problems JSONL of a model / synthetic source (None: the world's train split)
    problem_ids: list[str] = field(default_factory=list)  # only these problems ([]: the first n_problems)
    seed_problem: str | None = None  # experiment: easy | medium | hard, the one problem picked by the base's
                                     # pass rate over seed_k samples of seed_candidates problems (one-shot CFT)
    seed_candidates: int = 100
    seed_k: int = 8
    generators: dict[str, dict] = field(default_factory=dict)  # name -> overrides of this section (source
                                  # model or synthetic, model, temperature, n_per_problem, ...): one file, many
                                  # writers, each row with its `generator` ({}: this section alone)
    backend: str = "hf"           # model source: hf | vllm
    data_parallel: int = 1        # model source: generating processes, each with its own GPUs
    tensor_parallel: int = 0      # vllm: GPUs per process (0: the visible GPUs / data_parallel)


@dataclass
class CritiqueConfig(_Checked):
    """Teacher that critiques solutions: `checker` (the world's exact step checker), `openai`
    (any OpenAI-compatible endpoint) or `hf` (a local model through the HF backend)."""

    teacher: str = "checker"
    prompt: str = "critique_paper"        # a template in critiquelab/prompts/, or a path to a YAML file
    base_url: str | None = None           # openai: e.g. https://api.openai.com/v1
    model: str | None = None              # openai: model name; hf: model directory
    api_key_env: str = "OPENAI_API_KEY"   # the key is read from this variable, never stored
    temperature: float = 0.3
    top_p: float = 0.95
    max_tokens: int = 3200
    seed: int = 0
    concurrency: int = 64
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout: float = 120.0                # seconds per request
    max_attempts: int = 6                 # per item and run; failures are recorded and retried next run
    price_in_per_mtok: float | None = None   # cost ledger, USD per million prompt tokens (None: unknown)
    price_out_per_mtok: float | None = None  # USD per million completion tokens (None: unknown)
    price_source: str | None = None       # where the prices come from (a pricing page and its date), for the plan
    api_mode: str = "sync"                # openai: sync (requests) | batch (the Batch API: half price, within 24 h)
    batch_price_factor: float = 0.5       # batch: its price as a share of the synchronous one (OpenAI: 50%)
    batch_max_requests: int = 50000       # batch: requests per batch (OpenAI's limit: 50,000 and 200 MB)
    batch_poll_seconds: float = 60.0      # batch: how often to look at a running batch
    batch_wait: bool = True               # batch: False returns once the batches are created; rerun to collect
    panel: dict[str, dict] = field(default_factory=dict)  # several teachers: name -> overrides of this section;
                                          # one store, the teacher in each key (one-shot CFT: 7 teachers)
    checker_noise: float = 0.0            # checker: share of items whose verdict it gets wrong (a weak teacher)
    data_parallel: int = 1                # hf / vllm: generating processes, each with its own GPUs
    tensor_parallel: int = 0              # vllm: GPUs per process (0: the visible GPUs / data_parallel)


@dataclass
class BuildConfig(_Checked):
    """Training sets built from problems, solutions and critiques."""

    methods: list[str] = field(default_factory=lambda: ["sft_reference", "sft_noisy", "cft"])
    system_prompt: str = DEFAULT_SYSTEM_PROMPT   # used by SFT examples (the solving prompt)
    critique_instruction: str = DEFAULT_CRITIQUE_INSTRUCTION
    consistency: str = "keep"     # verdict vs reference-graded correctness: keep | drop | flag disagreements
    require_verdict: bool = True  # CFT examples need a parseable verdict
    dedupe: bool = True           # one problem text once (normalised), across all solutions' problems
    decontaminate: bool = True    # drop questions overlapping any benchmark test set
    ngram: int = 13               # word n-gram size for decontamination
    overlap_threshold: float = 0.5  # share of a question's n-grams found in a benchmark question
    mix_ratio: float = 0.5        # cft_sft_mix: share of CFT examples (the rest SFT-reference)
    critiques_per_solution: str = "one"  # one | all: every teacher's critique of a solution (a panel's store)
    majority: bool = False        # all: drop critiques whose verdict differs from most teachers' (ties: all dropped)
    exports: list[str] = field(default_factory=list)  # messages | hf | parquet | alpaca | trl_text (trl JSONL always)
    seed: int = 0


@dataclass
class TrainConfig(_Checked):
    """Fine-tuning with TRL's SFTTrainer (prompt-completion, loss on the completion only).

    Data volume: `token_budget` > 0 takes examples (cycling if needed) until their tokens reach
    it, so methods compare at equal compute; `token_budget: 0` trains `epochs` over all examples
    (the paper's recipe). Batch: per_device `batch_size` x `grad_accum` x world size.
    """

    model: str | None = None      # base model dir or hub name (the demo fills it in)
    data: str | None = None       # a dataset JSONL from `build` (prompt/completion rows)
    output_dir: str | None = None
    token_budget: int = 300_000
    epochs: float = 1.0
    max_steps: int = -1           # > 0 overrides epochs
    lr: float = 5e-4
    batch_size: int = 32          # per device
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    max_length: int = 512         # cutoff in tokens (the paper: 2048)
    too_long: str = "truncate"    # truncate | drop examples longer than max_length (counted in the log)
    seed: int = 0
    bf16: bool = False
    gradient_checkpointing: bool = False
    group_by_length: bool = True  # length-grouped batches + dynamic padding (the fast path on CPU)
    packing: bool = False         # padding-free packing (GPU with FlashAttention); exact per-example attention
    lora: bool = False            # PEFT LoRA adapters instead of full fine-tuning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                             "gate_proj", "up_proj", "down_proj"])
    merge_lora: bool = True       # save merged full weights (loadable with AutoModelForCausalLM)
    save_steps: int = 0           # > 0: also checkpoint every N steps
    save_epochs: bool = False     # checkpoint at the end of every epoch instead (many epochs over a small set)
    save_minutes: float = 5.0     # checkpoint when this many minutes passed since the last one (0: off);
                                  # a rerun resumes from the last complete checkpoint
    save_total_limit: int | None = None
    select_best_on: str | None = None  # a benchmark (world-validation, math-500, ...) to pick the best checkpoint
    select_limit: int | None = 200
    select_max_new_tokens: int = 200  # generation length when scoring checkpoints (real math needs ~2048)
    deepspeed: str | None = None  # DeepSpeed JSON config (launch with `accelerate launch`)
    launcher: str = "none"        # experiment cells: none (in the cell's process) | accelerate (a multi-process
                                  # fine-tune: `accelerate launch --config_file accelerate_config -m critiquelab.cli train`)
    accelerate_config: str | None = None  # launcher=accelerate: an accelerate config file (recipes/accelerate/)
    num_processes: int = 0        # launcher=accelerate: processes (0: the cell's GPUs, else the config file's number)
    report_to: str = "none"       # none | tensorboard | wandb
    logging_steps: int = 0        # 0: about 50 log points per run


@dataclass
class EvalConfig(_Checked):
    """Greedy batched evaluation graded by final answer."""

    benchmarks: list[str] = field(default_factory=lambda: ["world"])
    limit: int | None = None
    batch_size: int = 64
    max_new_tokens: int = 200
    prompt: str = "cot"           # cot (the paper's) | plain | fewshot (4 GSM8K-train examples)
    backend: str = "hf"           # hf | openai (any OpenAI-compatible endpoint) | vllm
    base_url: str | None = None   # openai backend: e.g. http://127.0.0.1:8000/v1
    api_model: str | None = None  # openai backend: the served model's name
    api_key_env: str = "OPENAI_API_KEY"   # the key is read from this variable, never stored
    concurrency: int = 16
    data_parallel: int = 1        # hf / vllm: generating processes, each with its own GPUs
    tensor_parallel: int = 0      # vllm: GPUs per process (0: the visible GPUs / data_parallel)


@dataclass
class CriticConfig(_Checked):
    """A critic judging solutions (`judge`, `eval-critic`, and an experiment's critic stage, which
    samples `n_samples` solutions for each of `n_problems` validation problems)."""

    backend: str = "hf"           # hf | openai (any OpenAI-compatible endpoint) | vllm
    base_url: str | None = None   # openai backend: e.g. http://127.0.0.1:8000/v1
    api_model: str | None = None  # openai backend: the served model's name
    api_key_env: str = "OPENAI_API_KEY"   # the key is read from this variable, never stored
    instruction: str = DEFAULT_CRITIQUE_INSTRUCTION  # the CFT prompt's first line (as in `build`)
    max_new_tokens: int = 1024    # room for a real critic's critique before its verdict
    batch_size: int = 16
    concurrency: int = 16
    n_problems: int = 100         # experiment: 0 skips the critic stage
    n_samples: int = 4
    temperature: float = 1.0      # experiment: sampling of the judged solutions
    methods: list[str] = field(default_factory=lambda: ["base", "sft_reference", "cft"])
    data_parallel: int = 1        # hf / vllm: generating processes, each with its own GPUs
    tensor_parallel: int = 0      # vllm: GPUs per process (0: the visible GPUs / data_parallel)


@dataclass
class RLConfig(_Checked):
    """Critique RL (rl.py): GRPO on a fixed, balanced pool of solutions with verdict rewards."""

    model: str | None = None      # the start: a base, or a CFT / SFT model (CFT followed by RL)
    solutions: str | None = None  # the pool: solutions.jsonl from `sample` (graded)
    output_dir: str | None = None
    critique_share: float = 1.0   # share of critique prompts; the rest are solve prompts
    balance: bool = True          # 1:1 right / wrong solutions (a constant verdict then scores 0.5)
    format_bonus: float = 0.0     # added to a critique's reward when it has a parseable verdict
    instruction: str = DEFAULT_CRITIQUE_INSTRUCTION
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    num_generations: int = 8      # completions per prompt (a GRPO group)
    max_completion_length: int = 512
    temperature: float = 1.0
    beta: float = 0.0             # KL coefficient (Critique-Coder: none)
    lr: float = 1e-6
    batch_size: int = 8           # per device; num_generations must divide batch_size x grad_accum
    grad_accum: int = 1
    steps: int = 100              # with token_budget: the most steps
    token_budget: int = 0         # > 0: stop once generated + trained tokens reach it (the grid's matched compute)
    save_steps: int = 50          # checkpoints; a rerun resumes from the last one
    save_minutes: float = 5.0     # and one when this many minutes passed since the last (0: off; Slurm preemption)
    bf16: bool = False
    use_vllm: bool = False        # GPU: generate with vLLM through TRL
    seed: int = 0


@dataclass
class VLLMConfig(_Checked):
    """The vLLM engine of every stage run with backend=vllm (sample, seeds, critique's local teacher,
    eval, judge, eval-critic, and an experiment's cells). These say how the engine runs, so, like
    `tensor_parallel`, they enter no result's key (a cached item stays cached when they change)."""

    gpu_memory_utilization: float = 0.9   # share of GPU memory vLLM takes for weights + KV cache (shared
                                          # with training: lower it)
    max_model_len: int | None = None      # context length (None: the model's); lower it to need less KV cache
    dtype: str = "auto"                   # auto (the model's) | float32 | bfloat16 | float16
    enforce_eager: bool = False           # no CUDA graphs: less memory and a faster start, slower decoding
    enable_prefix_caching: bool = True    # reuse the KV cache of shared prompt prefixes (few-shot, panels)
    engine_args: dict[str, Any] = field(default_factory=dict)  # any other argument of vllm.LLM


@dataclass
class SlurmConfig(_Checked):
    """`experiment.executor: slurm`: one Slurm job per cell, submitted through submitit."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 8
    mem_gb: int | None = None
    time_min: int = 240           # a job that hits it is requeued and resumes from its last checkpoint
    constraint: str | None = None
    array_parallelism: int = 64   # most cells of one job array running at once
    max_requeues: int = 3         # preemptions / timeouts a cell's job is resubmitted after
    setup: list[str] = field(default_factory=list)  # shell lines run before each job (module load ..., source ...)
    additional: dict[str, Any] = field(default_factory=dict)  # any other sbatch option, e.g. {exclusive: true}


@dataclass
class ExperimentConfig(_Checked):
    """Where an experiment's cells (fine-tune + evaluation) run (executors.py). Not part of any
    result's key: a grid started with one executor resumes with another."""

    executor: str = "local"       # local (in this process) | subprocess (child processes) | slurm (jobs)
    parallel_cells: int = 1       # subprocess: cells at once, each pinned to its share of the visible GPUs
    gpus_per_cell: int = 0        # subprocess: GPUs per cell (0: the visible GPUs / parallel_cells)
    wait: bool = True             # slurm: False submits and returns; a later `experiment` call collects
    poll_seconds: float = 30.0    # slurm: how often to look at the jobs
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


@dataclass
class RunConfig:
    """A whole demo / experiment run: every stage's config plus the grid's axes (experiment.py).

    The grid: `models` x `build.methods` (and each model's base) x `seeds` x `data_sizes` x
    `sources` x `teachers`. `sources` / `teachers` map a name to overrides of `sample` / `critique`
    (empty: one, "default"); `models` maps a name to overrides of `model` and `pretrain` (each a
    cached base pretrained on the world) or to a `base_model`. `lr_grid`: learning rates tried for
    every model x method on the first seed; the one whose model scores best on the validation split
    (`train.select_best_on`) trains every seed.
    """

    name: str = "demo"
    seeds: list[int] = field(default_factory=lambda: [0])
    data_sizes: list[int] = field(default_factory=list)   # training questions per cell; [] = all
    sources: dict[str, dict] = field(default_factory=dict)  # name -> sample overrides (noisy-solution source)
    teachers: dict[str, dict] = field(default_factory=dict)  # name -> critique overrides (who writes critiques)
    models: dict[str, dict] = field(default_factory=dict)  # name -> {model: {...}, pretrain: {...}} or {base_model}
    lr_grid: list[float] = field(default_factory=list)     # [] = train.lr for every method
    aux_models: dict[str, dict] = field(default_factory=dict)  # name -> like `models`, but not fine-tuned: bases
                                                              # that write or critique data, named `@name`
    base_model: str | None = None  # a model dir or hub name; None = pretrain the tiny model on the world
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    critique: CritiqueConfig = field(default_factory=CritiqueConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


# Fields that say how work is run or accounted for, not what it computes, and fields added after
# results were published (keyed only when changed from their default). Results are keyed with
# `key_of`, so a run resumes across executors, parallelism and releases.
NOT_IN_KEYS = {"launcher", "accelerate_config", "num_processes", "data_parallel", "tensor_parallel", "price_source",
               "api_mode", "batch_price_factor", "batch_max_requests", "batch_poll_seconds", "batch_wait"}
LATER_DEFAULTS = {("SampleConfig", "backend"): "hf", ("SampleConfig", "generators"): {},
                  ("SampleConfig", "problems"): None, ("SampleConfig", "problem_ids"): [],
                  ("SampleConfig", "seed_problem"): None,
                  ("SampleConfig", "seed_candidates"): 100, ("SampleConfig", "seed_k"): 8, ("CritiqueConfig", "panel"): {},
                  ("BuildConfig", "critiques_per_solution"): "one", ("BuildConfig", "majority"): False,
                  ("TrainConfig", "select_max_new_tokens"): 200, ("TrainConfig", "save_epochs"): False,
                  ("RLConfig", "save_minutes"): 5.0}


def key_of(section: Any) -> dict:
    """The settings of a config section that its results depend on (for stage and cache keys)."""
    kind = type(section).__name__
    return {k: v for k, v in dataclasses.asdict(section).items()
            if k not in NOT_IN_KEYS and LATER_DEFAULTS.get((kind, k), object()) != v}


def _check_type(value: Any, tp: Any, where: str, errors: list[str]) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], where, errors)
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{where}: expected a mapping, got {value!r}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):  # "a,b" from the command line
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            errors.append(f"{where}: expected a list, got {value!r}")
            return value
        return [_check_type(v, item_tp, f"{where}[{i}]", errors) for i, v in enumerate(value)]
    if tp is float and not isinstance(value, bool):
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        errors.append(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, data: dict, where: str, errors: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            errors.append(f"{where}{key}: unknown key (valid: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp, value = hints[f.name], data[f.name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                errors.append(f"{where}{f.name}: expected a mapping, got {value!r}")
                continue
            kwargs[f.name] = _build(tp, value, f"{where}{f.name}.", errors)
        else:
            n = len(errors)
            value = _check_type(value, tp, f"{where}{f.name}", errors)
            if len(errors) == n:  # a wrongly typed value is reported once, its range not checked
                kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except ConfigError as e:
        errors.extend(f"{where}{p}" for p in e.problems)
        return cls()


def with_overrides(base: Any, overrides: dict, where: str, errors: list[str]) -> Any:
    """A copy of the dataclass `base` with a (nested) mapping of overrides applied and checked;
    problems are appended to `errors` with `where` as their prefix."""
    if not isinstance(overrides, dict):
        errors.append(f"{where}: expected a mapping, got {overrides!r}")
        return base
    return _build(type(base), _merge(dataclasses.asdict(base), overrides), where, errors)


NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]*")  # a named entry's name: it becomes part of paths and ids


def named_sections(base: Any, table: dict, where: str, errors: list[str]) -> dict[str, Any]:
    """`table` (name -> overrides of the dataclass `base`: a grid axis, sample.generators, a teacher
    panel) as checked sections by name; every problem is appended to `errors` under `where`."""
    out = {}
    for name, overrides in table.items():
        if not NAME.fullmatch(str(name)):
            errors.append(f"{where}: name {name!r} must be letters, digits, '_' or '.', not starting with '.'")
        out[str(name)] = with_overrides(base, overrides, f"{where}.{name}.", errors)
    return out


def _set_dotted(data: dict, dotted: str, value: Any, path: Path | None = None, loaded: dict | None = None) -> None:
    keys = dotted.split(".")
    node, in_file = data, loaded
    for i, k in enumerate(keys[:-1]):
        node = node.setdefault(k, {})
        in_file = in_file.get(k) if isinstance(in_file, dict) else None
        if not isinstance(node, dict):
            section = ".".join(keys[: i + 1])
            if path is not None and in_file is node:  # the recipe's fault, not the override's
                raise UserError(f"invalid config in {path}: {section}: expected a mapping, got {node!r}")
            raise UserError(f"override {dotted}: {section} is not a section")
    node[keys[-1]] = value


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> Any:
    """Build `cls` from an optional YAML file, then `key=value` overrides (YAML-parsed values)."""
    data: dict = dict(base or {})
    loaded: dict = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(read_text(path, "config file")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            problem = str(getattr(e, "problem", ""))
            if ("<stream end>" in problem or "end of stream" in problem) and getattr(e, "context_mark", None):
                mark = e.context_mark  # an unclosed bracket or quote: name the line that opened it
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise UserError(f"{where}: invalid YAML ({getattr(e, 'problem', None) or 'parse error'})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: expected a mapping at the top level")
        data = _merge(data, loaded)
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"override {item!r}: expected key=value, e.g. train.lr=1e-4")
        key, raw = item.split("=", 1)
        _set_dotted(data, key.strip(), _parse_value(raw), path, loaded)
    errors: list[str] = []
    cfg = _build(cls, data, "", errors)
    if errors:
        where = f" in {path}" if path else ""
        raise UserError(f"invalid config{where}: " + "; ".join(errors))
    return cfg


def _parse_value(raw: str) -> Any:
    """An override's value as YAML (numbers, lists, true/false); text that is not valid YAML, such
    as `world.operations=*+`, or that YAML reads as a block list (`world.operations=-`), is taken
    as it is (a list is written `[a, b]` or `a,b`)."""
    if not raw or raw.strip() == "-" or raw.lstrip().startswith("- "):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ---------------------------------------------------------------------------------------------
# Checks of values: ranges, choices and cross-field rules, run whenever a config is made (from
# YAML, overrides or Python). Problems are gathered per section and reported all at once.

LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay")
CHOICES: dict[tuple[str, str], tuple] = {
    ("SampleConfig", "source"): ("model", "synthetic", "import"),
    ("SampleConfig", "import_preset"): ("webinstruct", "metamathqa", "numinamath", "custom"),
    ("SampleConfig", "backend"): ("hf", "vllm"),
    ("SampleConfig", "seed_problem"): ("easy", "medium", "hard"),
    ("CritiqueConfig", "teacher"): ("checker", "openai", "hf", "vllm"),
    ("CritiqueConfig", "api_mode"): ("sync", "batch"),
    ("BuildConfig", "consistency"): ("keep", "drop", "flag"),
    ("BuildConfig", "critiques_per_solution"): ("one", "all"),
    ("TrainConfig", "lr_scheduler"): LR_SCHEDULERS,
    ("TrainConfig", "too_long"): ("truncate", "drop"),
    ("TrainConfig", "report_to"): ("none", "tensorboard", "wandb"),
    ("TrainConfig", "launcher"): ("none", "accelerate"),
    ("ExperimentConfig", "executor"): ("local", "subprocess", "slurm"),
    ("EvalConfig", "prompt"): ("cot", "plain", "fewshot"),
    ("EvalConfig", "backend"): ("hf", "openai", "vllm"),
    ("CriticConfig", "backend"): ("hf", "openai", "vllm"),
    ("VLLMConfig", "dtype"): ("auto", "float32", "bfloat16", "float16"),
}

# (lowest, highest): None is unbounded; a lowest of 0.0 written as `0+` means "more than 0".
_POS, _NONNEG, _SHARE, _OPEN_SHARE = (1, None), (0, None), (0.0, 1.0), ("0+", 1.0)
RANGES: dict[str, dict[str, tuple]] = {
    "WorldConfig": {"min_steps": _POS, "max_steps": _POS, "max_number": (2, None), "max_factor": (2, None),
                    "max_value": (4, None), "n_pretrain": _NONNEG, "n_train": _NONNEG, "n_validation": _NONNEG,
                    "n_test": _NONNEG},
    "ModelConfig": {"hidden_size": _POS, "num_layers": _POS, "num_heads": _POS, "num_kv_heads": _POS,
                    "intermediate_size": _POS, "vocab_size": (260, None), "max_position_embeddings": (16, None)},
    "PretrainConfig": {"tokens": _POS, "critique_share": _SHARE, "lr": ("0+", None), "batch_size": _POS,
                       "warmup_ratio": _SHARE, "weight_decay": (0.0, None)},
    "SampleConfig": {"n_problems": _POS, "n_per_problem": _POS, "temperature": (0.0, None), "top_p": _OPEN_SHARE,
                     "max_new_tokens": _POS, "batch_size": _POS, "error_rate": _SHARE, "data_parallel": _POS,
                     "tensor_parallel": _NONNEG, "seed_candidates": _POS, "seed_k": (2, None)},
    "CritiqueConfig": {"temperature": (0.0, 2.0), "top_p": _OPEN_SHARE, "max_tokens": _POS, "concurrency": _POS,
                       "requests_per_minute": ("0+", None), "tokens_per_minute": ("0+", None),
                       "timeout": ("0+", None), "max_attempts": _POS, "price_in_per_mtok": (0.0, None),
                       "price_out_per_mtok": (0.0, None), "checker_noise": _SHARE,
                       "batch_price_factor": _OPEN_SHARE, "batch_max_requests": _POS,
                       "batch_poll_seconds": ("0+", None), "data_parallel": _POS, "tensor_parallel": _NONNEG},
    "BuildConfig": {"ngram": _POS, "overlap_threshold": _OPEN_SHARE, "mix_ratio": _OPEN_SHARE},
    "TrainConfig": {"token_budget": _NONNEG, "epochs": ("0+", None), "lr": ("0+", None), "batch_size": _POS,
                    "grad_accum": _POS, "warmup_ratio": _SHARE, "weight_decay": (0.0, None), "max_length": (8, None),
                    "lora_r": _POS, "lora_alpha": ("0+", None), "lora_dropout": (0.0, 0.99), "save_steps": _NONNEG,
                    "save_minutes": (0.0, None), "save_total_limit": _POS, "select_limit": _POS,
                    "logging_steps": _NONNEG, "num_processes": _NONNEG, "select_max_new_tokens": _POS},
    "RLConfig": {"critique_share": _SHARE, "format_bonus": (0.0, None), "num_generations": (2, None),
                 "max_completion_length": _POS, "temperature": ("0+", None), "beta": (0.0, None), "lr": ("0+", None),
                 "batch_size": _POS, "grad_accum": _POS, "steps": _POS, "save_steps": _NONNEG,
                 "token_budget": _NONNEG, "save_minutes": (0.0, None)},
    "SlurmConfig": {"nodes": _POS, "gpus_per_node": _NONNEG, "cpus_per_task": _POS, "mem_gb": _POS, "time_min": _POS,
                    "array_parallelism": _POS, "max_requeues": _NONNEG},
    "ExperimentConfig": {"parallel_cells": _POS, "gpus_per_cell": _NONNEG, "poll_seconds": ("0+", None)},
    "EvalConfig": {"limit": _POS, "batch_size": _POS, "max_new_tokens": _POS, "concurrency": _POS,
                   "data_parallel": _POS, "tensor_parallel": _NONNEG},
    "VLLMConfig": {"gpu_memory_utilization": _OPEN_SHARE, "max_model_len": (16, None)},
    "CriticConfig": {"n_problems": _NONNEG, "n_samples": _POS, "temperature": (0.0, None), "max_new_tokens": _POS,
                     "batch_size": _POS, "concurrency": _POS, "data_parallel": _POS, "tensor_parallel": _NONNEG},
}


class ConfigError(UserError):
    """Problems with a config's values; `problems` names each key (without its section)."""

    def __init__(self, section: str, problems: list[str]):
        super().__init__(f"invalid {section}: " + "; ".join(problems))
        self.problems = problems


def _range_problem(name: str, value: Any, bounds: tuple) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None  # optional and unset, or a type error reported elsewhere
    lo, hi = bounds
    if lo == "0+" and value <= 0:
        return f"{name}={value}: must be greater than 0"
    if isinstance(lo, (int, float)) and value < lo:
        return f"{name}={value}: must be at least {lo}"
    if hi is not None and value > hi:
        return f"{name}={value}: must be at most {hi}"
    return None


def _cross_problems(cfg: Any) -> list[str]:
    """Rules between fields of one section."""
    kind, out = type(cfg).__name__, []
    if kind == "WorldConfig":
        if isinstance(cfg.operations, str) and (not cfg.operations or set(cfg.operations) - set("+-*/")
                                                or len(set(cfg.operations)) != len(cfg.operations)):
            out.append(f"operations={cfg.operations!r}: use a subset of '+-*/' (each once), e.g. '+-*'")
        if _ints(cfg.min_steps, cfg.max_steps) and cfg.min_steps > cfg.max_steps:
            out.append(f"min_steps={cfg.min_steps} is above max_steps={cfg.max_steps}")
    if kind == "ModelConfig" and _ints(cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) and min(
            cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) > 0:
        if cfg.hidden_size % cfg.num_heads or (cfg.hidden_size // cfg.num_heads) % 2:
            out.append(f"num_heads={cfg.num_heads} must divide hidden_size={cfg.hidden_size} into heads of an even "
                       "size (rotary embeddings)")
        if cfg.num_heads % cfg.num_kv_heads:
            out.append(f"num_kv_heads={cfg.num_kv_heads} must divide num_heads={cfg.num_heads}")
    if kind == "TrainConfig" and _ints(cfg.max_steps) and cfg.max_steps != -1 and cfg.max_steps < 1:
        out.append(f"max_steps={cfg.max_steps}: use -1 (train by epochs / token budget) or a positive number")
    return out


def _ints(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def check_values(cfg: Any) -> None:
    """Raise ConfigError listing every out-of-range value, unknown choice and broken rule of one
    section (called by each config's `__post_init__`)."""
    kind, problems = type(cfg).__name__, []
    for name, bounds in RANGES.get(kind, {}).items():
        if (p := _range_problem(name, getattr(cfg, name), bounds)) is not None:
            problems.append(p)
    for (owner, name), valid in CHOICES.items():
        value = getattr(cfg, name) if owner == kind else None
        if isinstance(value, str) and value not in valid:
            problems.append(f"{name}={value!r}: use one of {', '.join(valid)}")
    problems += _cross_problems(cfg)
    if problems:
        raise ConfigError(kind, problems)
