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
    "WorldConfig", "ModelConfig", "ModelEntry", "PretrainConfig", "SampleConfig", "CritiqueConfig",
    "BuildConfig", "TrainConfig", "EvalConfig", "CriticConfig", "RLConfig", "VLLMConfig", "SlurmConfig",
    "ExperimentConfig", "RunConfig",
    "load_config", "to_dict", "key_of",
    "with_overrides", "named_sections", "NAME", "check_values", "ConfigError", "spec", "CRITIQUE_STYLES",
    "DEFAULT_SYSTEM_PROMPT",
]

DEFAULT_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
DEFAULT_CRITIQUE_INSTRUCTION = "Please critique whether the following solution to the question is correct."


CRITIQUE_STYLES = ("terse", "recompute", "solve_first")  # how the world's checker writes a critique (world.check)
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay")


def spec(default: Any, *, one_of: tuple | None = None, at_least: float | None = None, above: float | None = None,
         at_most: float | None = None) -> Any:
    """A field's default with the values it may take, checked whenever a section is made (from
    YAML, overrides or Python): a choice among `one_of`, or a number in a range. None (an unset
    optional) always passes."""
    return field(default=default, metadata={"one_of": one_of, "at_least": at_least, "above": above,
                                            "at_most": at_most})


class _Checked:
    """Every section checks its values when it is made (see `check_values` below)."""

    def __post_init__(self) -> None:
        check_values(self)


@dataclass
class WorldConfig(_Checked):
    """Synthetic arithmetic word problems (see world.py)."""

    seed: int = 0
    min_steps: int = spec(2, at_least=1)
    max_steps: int = spec(4, at_least=1)
    max_number: int = spec(30, at_least=2)  # operands of + and - are drawn from 1..max_number
    max_factor: int = spec(4, at_least=2)  # operands of * and / are drawn from 2..max_factor
    max_value: int = spec(400, at_least=4)  # every intermediate value stays in 0..max_value
    operations: str = "+-*"       # any subset of "+-*/"
    n_pretrain: int = spec(20000, at_least=0)  # corpus of the from-scratch base model
    n_train: int = spec(5000, at_least=0)  # question pool for sampling, critiques and fine-tuning
    n_validation: int = spec(200, at_least=0)
    n_test: int = spec(500, at_least=0)


@dataclass
class ModelConfig(_Checked):
    """Architecture of the tiny from-scratch model (a real Qwen2ForCausalLM)."""

    hidden_size: int = spec(128, at_least=1)
    num_layers: int = spec(4, at_least=1)
    num_heads: int = spec(4, at_least=1)
    num_kv_heads: int = spec(2, at_least=1)
    intermediate_size: int = spec(384, at_least=1)
    vocab_size: int = spec(512, at_least=260)
    max_position_embeddings: int = spec(512, at_least=16)


@dataclass
class PretrainConfig(_Checked):
    """From-scratch pretraining on the world's train split (budgeted in tokens, not seconds)."""

    tokens: int = spec(2_000_000, at_least=1)
    # share of pretraining documents that are critiques of noisy solutions
    critique_share: float = spec(0.25, at_least=0.0, at_most=1.0)
    critique_style: str = spec("terse", one_of=CRITIQUE_STYLES)  # the style of those critiques (world.check)
    lr: float = spec(2e-3, above=0)
    batch_size: int = spec(8, at_least=1)  # small batches: more steps per token, which the tiny model needs
    warmup_ratio: float = spec(0.05, at_least=0.0, at_most=1.0)
    weight_decay: float = spec(0.01, at_least=0.0)
    seed: int = 0
    # take the base shipped with critiquelab for exactly these settings (the fast demo's; checked by
    # sha256) instead of pretraining one on this machine, whose CPU kernels would give other weights
    shipped: bool = True


@dataclass
class SampleConfig(_Checked):
    """Noisy candidate solutions: from a model (`model`), by error injection (`synthetic`), or
    imported from a file / HF dataset (`import`) with a field mapping. `data_parallel` and
    `tensor_parallel` (here and in critique, eval, critic) place the generation on GPUs and are
    in no item's key: see docs/generation-at-scale.md."""

    source: str = spec("model", one_of=("model", "synthetic", "import"))
    model: str | None = None      # model: the sampler (dir or hub name); None = the run's base model
    import_path: str | None = None        # import: JSONL / JSON / parquet / saved HF dataset / hub name
    # import: webinstruct | metamathqa | numinamath | custom
    import_preset: str = spec("custom", one_of=("webinstruct", "metamathqa", "numinamath", "custom"))
    import_fields: dict[str, str] = field(default_factory=dict)  # ours -> theirs: question, solution, answer, id
    import_split: str = "train"
    n_problems: int = spec(3000, at_least=1)
    n_per_problem: int = spec(1, at_least=1)
    temperature: float = spec(1.0, at_least=0.0)
    top_p: float = spec(1.0, above=0, at_most=1.0)
    max_new_tokens: int = spec(160, at_least=1)
    batch_size: int = spec(128, at_least=1)
    # synthetic source: share of solutions with an injected error
    error_rate: float = spec(0.5, at_least=0.0, at_most=1.0)
    seed: int = 0
    problems: str | None = None   # experiment: the problems JSONL of a model / synthetic source (None: the world's train split)
    problem_ids: list[str] = field(default_factory=list)  # only these problems ([]: the first n_problems)
    # experiment: easy | medium | hard, the one problem picked by the base's
    # pass rate over seed_k samples of seed_candidates problems (one-shot CFT)
    seed_problem: str | None = spec(None, one_of=("easy", "medium", "hard"))
    seed_candidates: int = spec(100, at_least=1)
    seed_k: int = spec(8, at_least=2)
    generators: dict[str, dict] = field(default_factory=dict)  # name -> overrides of this section (source
                                  # model or synthetic, model, temperature, n_per_problem, ...): one file, many
                                  # writers, each row with its `generator` ({}: this section alone)
    backend: str = spec("hf", one_of=("hf", "vllm"))  # model source: hf | vllm
    data_parallel: int = spec(1, at_least=1)  # model source: generating processes, each with its own GPUs
    tensor_parallel: int = spec(0, at_least=0)  # vllm: GPUs per process (0: the visible GPUs / data_parallel)


@dataclass
class CritiqueConfig(_Checked):
    """Teacher that critiques solutions: `checker` (the world's exact step checker), `openai`
    (any OpenAI-compatible endpoint) or `hf` (a local model through the HF backend)."""

    teacher: str = spec("checker", one_of=("checker", "openai", "hf", "vllm"))
    prompt: str = "critique_paper"        # a template in critiquelab/prompts/, or a path to a YAML file
    refine_prompt: str = "refine_paper"   # `refine` (and an experiment's cgd): its `task: refine` template
    base_url: str | None = None           # openai: e.g. https://api.openai.com/v1
    model: str | None = None              # openai: model name; hf: model directory
    api_key_env: str = "OPENAI_API_KEY"   # the key is read from this variable, never stored
    temperature: float = spec(0.3, at_least=0.0, at_most=2.0)
    top_p: float = spec(0.95, above=0, at_most=1.0)
    max_tokens: int = spec(3200, at_least=1)
    seed: int = 0
    concurrency: int = spec(64, at_least=1)
    requests_per_minute: float | None = spec(None, above=0)
    tokens_per_minute: float | None = spec(None, above=0)
    timeout: float = spec(120.0, above=0)  # seconds per request
    max_attempts: int = spec(6, at_least=1)  # per item and run; failures are recorded and retried next run
    # cost ledger, USD per million prompt tokens (None: unknown)
    price_in_per_mtok: float | None = spec(None, at_least=0.0)
    price_out_per_mtok: float | None = spec(None, at_least=0.0)  # USD per million completion tokens (None: unknown)
    price_source: str | None = None       # where the prices come from (a pricing page and its date), for the plan
    # openai: sync (requests) | batch (the Batch API: half price, within 24 h)
    api_mode: str = spec("sync", one_of=("sync", "batch"))
    # batch: its price as a share of the synchronous one (OpenAI: 50%)
    batch_price_factor: float = spec(0.5, above=0, at_most=1.0)
    batch_max_requests: int = spec(50000, at_least=1)  # batch: requests per batch (OpenAI's limit: 50,000 and 200 MB)
    batch_poll_seconds: float = spec(60.0, above=0)  # batch: how often to look at a running batch
    batch_wait: bool = True               # batch: False returns once the batches are created; rerun to collect
    panel: dict[str, dict] = field(default_factory=dict)  # several teachers: name -> overrides of this section;
                                          # one store, the teacher in each key (one-shot CFT: 7 teachers)
    # checker: share of items it gets wrong (a weak teacher): the verdict of a critique, an injected
    # error in its own solution (solve) or in its refinement (refine)
    checker_noise: float = spec(0.0, at_least=0.0, at_most=1.0)
    # checker: how it writes critiques (world.check); None: terse, or in an experiment the style its
    # base read in pretraining (pretrain.critique_style), so a model axis of styles needs no teacher axis
    checker_style: str | None = spec(None, one_of=CRITIQUE_STYLES)
    data_parallel: int = spec(1, at_least=1)  # hf / vllm: generating processes, each with its own GPUs
    tensor_parallel: int = spec(0, at_least=0)  # vllm: GPUs per process (0: the visible GPUs / data_parallel)


@dataclass
class BuildConfig(_Checked):
    """Training sets built from problems, solutions and critiques."""

    methods: list[str] = field(default_factory=lambda: ["sft_reference", "sft_noisy", "cft"])
    system_prompt: str = DEFAULT_SYSTEM_PROMPT   # used by SFT examples (the solving prompt)
    critique_instruction: str = DEFAULT_CRITIQUE_INSTRUCTION
    # verdict vs reference-graded correctness: keep | drop | flag disagreements
    consistency: str = spec("keep", one_of=("keep", "drop", "flag"))
    require_verdict: bool = True  # CFT examples need a parseable verdict
    dedupe: bool = True           # one problem text once (normalised), across all solutions' problems
    decontaminate: bool = True    # drop questions overlapping any benchmark test set
    ngram: int = spec(13, at_least=1)  # word n-gram size for decontamination
    # share of a question's n-grams found in a benchmark question
    overlap_threshold: float = spec(0.5, above=0, at_most=1.0)
    mix_ratio: float = spec(0.5, above=0, at_most=1.0)  # cft_sft_mix: share of CFT examples (the rest SFT-reference)
    # one | all: every teacher's critique of a solution (a panel's store)
    critiques_per_solution: str = spec("one", one_of=("one", "all"))
    majority: bool = False        # all: drop critiques whose verdict differs from most teachers' (ties: all dropped)
    exports: list[str] = field(default_factory=list)  # messages | hf | parquet | alpaca | trl_text (trl JSONL always)
    cgd_keep_wrong: bool = False  # cgd: keep refined solutions that grade wrong against the reference answer
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
    token_budget: int = spec(300_000, at_least=0)
    epochs: float = spec(1.0, above=0)
    max_steps: int = -1           # > 0 overrides epochs
    lr: float = spec(5e-4, above=0)
    batch_size: int = spec(32, at_least=1)  # per device
    grad_accum: int = spec(1, at_least=1)
    warmup_ratio: float = spec(0.1, at_least=0.0, at_most=1.0)
    weight_decay: float = spec(0.0, at_least=0.0)
    lr_scheduler: str = spec("cosine", one_of=LR_SCHEDULERS)
    max_length: int = spec(512, at_least=8)  # cutoff in tokens (the paper: 2048)
    # truncate | drop examples longer than max_length (counted in the log)
    too_long: str = spec("truncate", one_of=("truncate", "drop"))
    seed: int = 0
    bf16: bool = False
    gradient_checkpointing: bool = False
    group_by_length: bool = True  # length-grouped batches + dynamic padding (the fast path on CPU)
    packing: bool = False         # padding-free packing (GPU with FlashAttention); exact per-example attention
    lora: bool = False            # PEFT LoRA adapters instead of full fine-tuning
    lora_r: int = spec(16, at_least=1)
    lora_alpha: int = spec(32, above=0)
    lora_dropout: float = spec(0.05, at_least=0.0, at_most=0.99)
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                             "gate_proj", "up_proj", "down_proj"])
    merge_lora: bool = True       # save merged full weights (loadable with AutoModelForCausalLM)
    save_steps: int = spec(0, at_least=0)  # > 0: also checkpoint every N steps
    save_epochs: bool = False     # checkpoint at the end of every epoch instead (many epochs over a small set)
    # checkpoint when this many minutes passed since the last one (0: off);
    # a rerun resumes from the last complete checkpoint
    save_minutes: float = spec(5.0, at_least=0.0)
    save_total_limit: int | None = spec(None, at_least=1)
    select_best_on: str | None = None  # a benchmark (world-validation, math-500, ...) to pick the best checkpoint
    select_limit: int | None = spec(200, at_least=1)
    # generation length when scoring checkpoints (real math needs ~2048)
    select_max_new_tokens: int = spec(200, at_least=1)
    deepspeed: str | None = None  # DeepSpeed JSON config (launch with `accelerate launch`)
    # experiment cells: none (in the cell's process) | accelerate (a multi-process
    # fine-tune: `accelerate launch --config_file accelerate_config -m critiquelab.cli train`)
    launcher: str = spec("none", one_of=("none", "accelerate"))
    accelerate_config: str | None = None  # launcher=accelerate: an accelerate config file (recipes/accelerate/)
    # launcher=accelerate: processes (0: the cell's GPUs, else the config file's number)
    num_processes: int = spec(0, at_least=0)
    report_to: str = spec("none", one_of=("none", "tensorboard", "wandb"))
    logging_steps: int = spec(0, at_least=0)  # 0: about 50 log points per run


@dataclass
class EvalConfig(_Checked):
    """Greedy batched evaluation graded by final answer."""

    benchmarks: list[str] = field(default_factory=lambda: ["world"])
    limit: int | None = spec(None, at_least=1)
    batch_size: int = spec(64, at_least=1)
    max_new_tokens: int = spec(200, at_least=1)
    # cot (the paper's) | plain | fewshot (4 GSM8K-train examples)
    prompt: str = spec("cot", one_of=("cot", "plain", "fewshot"))
    backend: str = spec("hf", one_of=("hf", "openai", "vllm"))  # hf | openai (any OpenAI-compatible endpoint) | vllm
    base_url: str | None = None   # openai backend: e.g. http://127.0.0.1:8000/v1
    api_model: str | None = None  # openai backend: the served model's name
    api_key_env: str = "OPENAI_API_KEY"   # the key is read from this variable, never stored
    concurrency: int = spec(16, at_least=1)
    data_parallel: int = spec(1, at_least=1)  # hf / vllm: generating processes, each with its own GPUs
    tensor_parallel: int = spec(0, at_least=0)  # vllm: GPUs per process (0: the visible GPUs / data_parallel)
    # how a problems file's answers are graded (answers.py); unset: math. Built-in benchmarks have their own.
    answer_type: str | None = spec(None, one_of=("math", "choice", "bbeh"))
    choice_permutations: int = spec(1, at_least=1)  # GPQA: each item under k option orders (mean and spread)
    choice_prompt: str = spec("boxed", one_of=("boxed", "official"))  # GPQA: ours (a boxed letter) | official
    hf_fields: dict[str, str] = field(default_factory=dict)  # hf:DATASET benchmarks: ours -> column (question, ...)
    # math answers without a final-answer marker (grading.py): conclusion (a value the concluding
    # sentence gives; never one restating the question) | last_number (the old rule) | off
    answer_fallback: str = spec("conclusion", one_of=("conclusion", "last_number", "off"))


@dataclass
class CriticConfig(_Checked):
    """A critic judging solutions (`judge`, `eval-critic`, and an experiment's critic stage, which
    samples `n_samples` solutions for each of `n_problems` validation problems)."""

    backend: str = spec("hf", one_of=("hf", "openai", "vllm"))  # hf | openai (any OpenAI-compatible endpoint) | vllm
    base_url: str | None = None   # openai backend: e.g. http://127.0.0.1:8000/v1
    api_model: str | None = None  # openai backend: the served model's name
    api_key_env: str = "OPENAI_API_KEY"   # the key is read from this variable, never stored
    instruction: str = DEFAULT_CRITIQUE_INSTRUCTION  # the CFT prompt's first line (as in `build`)
    max_new_tokens: int = spec(1024, at_least=1)  # room for a real critic's critique before its verdict
    batch_size: int = spec(16, at_least=1)
    concurrency: int = spec(16, at_least=1)
    n_problems: int = spec(100, at_least=0)  # experiment: 0 skips the critic stage
    n_samples: int = spec(4, at_least=1)
    temperature: float = spec(1.0, at_least=0.0)  # experiment: sampling of the judged solutions
    methods: list[str] = field(default_factory=lambda: ["base", "sft_reference", "cft"])
    # experiment: the world split whose problems the judged solutions are of (test: a confirmatory
    # run whose checkpoints were picked on validation)
    split: str = spec("validation", one_of=("validation", "test"))
    data_parallel: int = spec(1, at_least=1)  # hf / vllm: generating processes, each with its own GPUs
    tensor_parallel: int = spec(0, at_least=0)  # vllm: GPUs per process (0: the visible GPUs / data_parallel)
    benchmark_limit: int | None = spec(None, at_least=1)  # eval-critic --benchmark: the first N rows of each file


@dataclass
class RLConfig(_Checked):
    """Critique RL (rl.py): GRPO on a fixed, balanced pool of solutions with verdict rewards."""

    model: str | None = None      # the start: a base, or a CFT / SFT model (CFT followed by RL)
    solutions: str | None = None  # the pool: solutions.jsonl from `sample` (graded)
    output_dir: str | None = None
    # share of critique prompts; the rest are solve prompts
    critique_share: float = spec(1.0, at_least=0.0, at_most=1.0)
    balance: bool = True          # 1:1 right / wrong solutions (a constant verdict then scores 0.5)
    format_bonus: float = spec(0.0, at_least=0.0)  # added to a critique's reward when it has a parseable verdict
    instruction: str = DEFAULT_CRITIQUE_INSTRUCTION
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    num_generations: int = spec(8, at_least=2)  # completions per prompt (a GRPO group)
    max_completion_length: int = spec(512, at_least=1)
    temperature: float = spec(1.0, above=0)
    beta: float = spec(0.0, at_least=0.0)  # KL coefficient (Critique-Coder: none)
    lr: float = spec(1e-6, above=0)
    batch_size: int = spec(8, at_least=1)  # per device; num_generations must divide batch_size x grad_accum
    grad_accum: int = spec(1, at_least=1)
    steps: int = spec(100, at_least=1)  # with token_budget: the most steps
    # > 0: stop once generated + trained tokens reach it (the grid's matched compute)
    token_budget: int = spec(0, at_least=0)
    save_steps: int = spec(50, at_least=0)  # checkpoints; a rerun resumes from the last one
    # and one when this many minutes passed since the last (0: off; Slurm preemption)
    save_minutes: float = spec(5.0, at_least=0.0)
    bf16: bool = False
    use_vllm: bool = False        # GPU: generate with vLLM through TRL
    seed: int = 0


@dataclass
class VLLMConfig(_Checked):
    """The vLLM engine of every stage run with backend=vllm (sample, seeds, critique's local teacher,
    eval, judge, eval-critic, and an experiment's cells). These say how the engine runs, so, like
    `tensor_parallel`, they enter no result's key (a cached item stays cached when they change)."""

    # share of GPU memory vLLM takes for weights + KV cache (shared
    # with training: lower it)
    gpu_memory_utilization: float = spec(0.9, above=0, at_most=1.0)
    # context length (None: the model's); lower it to need less KV cache
    max_model_len: int | None = spec(None, at_least=16)
    # auto (the model's) | float32 | bfloat16 | float16
    dtype: str = spec("auto", one_of=("auto", "float32", "bfloat16", "float16"))
    enforce_eager: bool = False           # no CUDA graphs: less memory and a faster start, slower decoding
    enable_prefix_caching: bool = True    # reuse the KV cache of shared prompt prefixes (few-shot, panels)
    engine_args: dict[str, Any] = field(default_factory=dict)  # any other argument of vllm.LLM


@dataclass
class SlurmConfig(_Checked):
    """`experiment.executor: slurm`: one Slurm job per cell, submitted through submitit."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int = spec(1, at_least=1)
    gpus_per_node: int = spec(0, at_least=0)
    cpus_per_task: int = spec(8, at_least=1)
    mem_gb: int | None = spec(None, at_least=1)
    time_min: int = spec(240, at_least=1)  # a job that hits it is requeued and resumes from its last checkpoint
    constraint: str | None = None
    array_parallelism: int = spec(64, at_least=1)  # most cells of one job array running at once
    max_requeues: int = spec(3, at_least=0)  # preemptions / timeouts a cell's job is resubmitted after
    setup: list[str] = field(default_factory=list)  # shell lines run before each job (module load ..., source ...)
    additional: dict[str, Any] = field(default_factory=dict)  # any other sbatch option, e.g. {exclusive: true}


@dataclass
class ExperimentConfig(_Checked):
    """Where an experiment's cells (fine-tune + evaluation) run (executors.py). Not part of any
    result's key: a grid started with one executor resumes with another."""

    # local (in this process) | subprocess (child processes) | slurm (jobs)
    executor: str = spec("local", one_of=("local", "subprocess", "slurm"))
    # subprocess: cells at once, each pinned to its share of the visible GPUs
    parallel_cells: int = spec(1, at_least=1)
    gpus_per_cell: int = spec(0, at_least=0)  # subprocess: GPUs per cell (0: the visible GPUs / parallel_cells)
    wait: bool = True             # slurm: False submits and returns; a later `experiment` call collects
    poll_seconds: float = spec(30.0, above=0)  # slurm: how often to look at the jobs
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


@dataclass
class ModelEntry:
    """One entry of `models` or `aux_models`: a base pretrained on the world, with `model` and
    `pretrain` overriding those sections, or a given `base_model` (default: the run's)."""

    model: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)
    base_model: str | None = None


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
    models: dict[str, ModelEntry] = field(default_factory=dict)  # name -> its base (the model axis)
    lr_grid: list[float] = field(default_factory=list)     # [] = train.lr for every method
    # name -> like `models`, but not fine-tuned: bases that write or critique data, named `@name`
    aux_models: dict[str, ModelEntry] = field(default_factory=dict)
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
# `key_of`, so a run resumes across executors, parallelism and releases. `refine_prompt` is keyed where
# it acts: the refine stage runs with it as its `prompt`, so a new one redoes the refinements, not the critiques.
NOT_IN_KEYS = {"launcher", "accelerate_config", "num_processes", "data_parallel", "tensor_parallel", "price_source",
               "api_mode", "batch_price_factor", "batch_max_requests", "batch_poll_seconds", "batch_wait",
               "refine_prompt", "shipped"}
LATER_DEFAULTS = {("SampleConfig", "backend"): "hf", ("SampleConfig", "generators"): {},
                  ("SampleConfig", "problems"): None, ("SampleConfig", "problem_ids"): [],
                  ("SampleConfig", "seed_problem"): None,
                  ("SampleConfig", "seed_candidates"): 100, ("SampleConfig", "seed_k"): 8, ("CritiqueConfig", "panel"): {},
                  ("BuildConfig", "critiques_per_solution"): "one", ("BuildConfig", "majority"): False,
                  ("TrainConfig", "select_max_new_tokens"): 200, ("TrainConfig", "save_epochs"): False,
                  ("RLConfig", "save_minutes"): 5.0, ("PretrainConfig", "critique_style"): "terse",
                  ("CritiqueConfig", "checker_style"): None, ("CriticConfig", "split"): "validation",
                  ("EvalConfig", "answer_type"): None, ("EvalConfig", "choice_permutations"): 1,
                  ("EvalConfig", "choice_prompt"): "boxed", ("EvalConfig", "hf_fields"): {},
                  ("CriticConfig", "benchmark_limit"): None,
                  ("BuildConfig", "cgd_keep_wrong"): False}


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
        item_tp = typing.get_args(tp)[1]
        if not dataclasses.is_dataclass(item_tp):
            return value
        out = {}  # named entries, such as `models`
        for k, v in value.items():
            if isinstance(v, dict):
                out[k] = _build(item_tp, v, f"{where}.{k}.", errors)
            else:
                errors.append(f"{where}.{k}: expected a mapping, got {v!r}")
        return out
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


class ConfigError(UserError):
    """Problems with a config's values; `problems` names each key (without its section)."""

    def __init__(self, section: str, problems: list[str]):
        super().__init__(f"invalid {section}: " + "; ".join(problems))
        self.problems = problems


def _value_problem(name: str, value: Any, m: dict) -> str | None:
    """What is wrong with one value against its field's `spec` (None: nothing, or a type error
    that is reported elsewhere)."""
    if isinstance(value, str) and m.get("one_of") and value not in m["one_of"]:
        return f"{name}={value!r}: use one of {', '.join(m['one_of'])}"
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if m.get("above") is not None and value <= m["above"]:
        return f"{name}={value}: must be greater than {m['above']}"
    if m.get("at_least") is not None and value < m["at_least"]:
        return f"{name}={value}: must be at least {m['at_least']}"
    if m.get("at_most") is not None and value > m["at_most"]:
        return f"{name}={value}: must be at most {m['at_most']}"
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
    """Raise ConfigError listing every value outside its field's `spec` and every broken rule of
    one section (called by each config's `__post_init__`)."""
    problems = [p for f in dataclasses.fields(cfg)
                if (p := _value_problem(f.name, getattr(cfg, f.name), f.metadata)) is not None]
    problems += _cross_problems(cfg)
    if problems:
        raise ConfigError(type(cfg).__name__, problems)
