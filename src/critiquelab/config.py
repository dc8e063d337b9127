"""Configuration: one dataclass per stage, nested in `RunConfig`; YAML recipes; dotted overrides.

Precedence: dataclass defaults < YAML recipe < `key=value` overrides. A value counts as given
when its key is present, not when it is truthy, so `train.bf16=false` beats a YAML `true`.
Unknown keys and wrongly typed values are all reported at once, before any work starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from critiquelab.io import UserError

__all__ = [
    "WorldConfig", "ModelConfig", "PretrainConfig", "SampleConfig", "CritiqueConfig",
    "BuildConfig", "TrainConfig", "EvalConfig", "CriticConfig", "RunConfig", "load_config", "to_dict",
    "with_overrides",
    "DEFAULT_SYSTEM_PROMPT",
]

DEFAULT_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass
class WorldConfig:
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
class ModelConfig:
    """Architecture of the tiny from-scratch model (a real Qwen2ForCausalLM)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    vocab_size: int = 512
    max_position_embeddings: int = 512


@dataclass
class PretrainConfig:
    """From-scratch pretraining on the world's train split (budgeted in tokens, not seconds)."""

    tokens: int = 2_000_000
    critique_share: float = 0.25  # share of pretraining documents that are critiques of noisy solutions
    lr: float = 2e-3
    batch_size: int = 8           # small batches: more steps per token, which the tiny model needs
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    seed: int = 0


@dataclass
class SampleConfig:
    """Noisy candidate solutions: from a model (`model`), by error injection (`synthetic`), or
    imported from a file / HF dataset (`import`) with a field mapping."""

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


@dataclass
class CritiqueConfig:
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
    price_in_per_mtok: float = 0.0        # cost ledger, USD per million prompt tokens
    price_out_per_mtok: float = 0.0       # USD per million completion tokens
    checker_noise: float = 0.0            # checker: share of items whose verdict it gets wrong (a weak teacher)


@dataclass
class BuildConfig:
    """Training sets built from problems, solutions and critiques."""

    methods: list[str] = field(default_factory=lambda: ["sft_reference", "sft_noisy", "cft"])
    system_prompt: str = DEFAULT_SYSTEM_PROMPT   # used by SFT examples (the solving prompt)
    critique_instruction: str = "Please critique whether the following solution to the question is correct."
    consistency: str = "keep"     # verdict vs reference-graded correctness: keep | drop | flag disagreements
    require_verdict: bool = True  # CFT examples need a parseable verdict
    dedupe: bool = True           # one problem text once (normalised), across all solutions' problems
    decontaminate: bool = True    # drop questions overlapping any benchmark test set
    ngram: int = 13               # word n-gram size for decontamination
    overlap_threshold: float = 0.5  # share of a question's n-grams found in a benchmark question
    mix_ratio: float = 0.5        # cft_sft_mix: share of CFT examples (the rest SFT-reference)
    exports: list[str] = field(default_factory=list)  # trl_text | hf | parquet | alpaca (trl JSONL always)
    seed: int = 0


@dataclass
class TrainConfig:
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
    save_steps: int = 0           # > 0: checkpoint every N steps; a rerun resumes from the last one
    save_total_limit: int | None = None
    select_best_on: str | None = None  # a benchmark (world-validation, math-500, ...) to pick the best checkpoint
    select_limit: int | None = 200
    deepspeed: str | None = None  # DeepSpeed JSON config (launch with `accelerate launch`)
    report_to: str = "none"       # none | tensorboard | wandb
    logging_steps: int = 0        # 0: about 50 log points per run


@dataclass
class EvalConfig:
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


@dataclass
class CriticConfig:
    """Critic evaluation in a run: N sampled solutions per validation problem, judged by each model."""

    n_problems: int = 100         # 0 skips the critic stage
    n_samples: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 200
    methods: list[str] = field(default_factory=lambda: ["base", "sft_reference", "cft"])


@dataclass
class RunConfig:
    """A whole demo / experiment run: every stage's config plus the grid's axes (experiment.py).

    The grid: `build.methods` (and the base) x `seeds` x `data_sizes` x `sources` x `teachers`.
    `sources` / `teachers` map a name to overrides of `sample` / `critique` (empty: one, "default").
    """

    name: str = "demo"
    seeds: list[int] = field(default_factory=lambda: [0])
    data_sizes: list[int] = field(default_factory=list)   # training questions per cell; [] = all
    sources: dict[str, dict] = field(default_factory=dict)  # name -> sample overrides (noisy-solution source)
    teachers: dict[str, dict] = field(default_factory=dict)  # name -> critique overrides (who writes critiques)
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


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


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
            kwargs[f.name] = _check_type(value, tp, f"{where}{f.name}", errors)
    return cls(**kwargs)


def with_overrides(base: Any, overrides: dict, where: str, errors: list[str]) -> Any:
    """A copy of the dataclass `base` with a (nested) mapping of overrides applied and checked;
    problems are appended to `errors` with `where` as their prefix."""
    if not isinstance(overrides, dict):
        errors.append(f"{where}: expected a mapping, got {overrides!r}")
        return base
    return _build(type(base), _merge(dataclasses.asdict(base), overrides), where, errors)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise UserError(f"override {dotted}: {k} is not a section")
    node[keys[-1]] = value


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> Any:
    """Build `cls` from an optional YAML file, then `key=value` overrides (YAML-parsed values)."""
    data: dict = dict(base or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{path}: invalid YAML ({e})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: expected a mapping at the top level")
        data = _merge(data, loaded)
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"override {item!r}: expected key=value, e.g. train.lr=1e-4")
        key, raw = item.split("=", 1)
        _set_dotted(data, key.strip(), yaml.safe_load(raw) if raw else "")
    errors: list[str] = []
    cfg = _build(cls, data, "", errors)
    if errors:
        where = f" in {path}" if path else ""
        raise UserError(f"invalid config{where}: " + "; ".join(errors))
    return cfg


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
