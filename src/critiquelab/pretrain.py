"""Tiny base model from scratch: a local tokenizer and a real Qwen2ForCausalLM.

Inputs: the world's `pretrain.jsonl` (never validation/test problems). Output: a directory that
`AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained` load, with a chat
template. Models are cached by a hash of (world, model, pretrain) configs, so a second demo
reuses the first one's base model.

    critiquelab pretrain --world runs/w --out runs/base
"""

from __future__ import annotations

import logging
import random
import shutil
from dataclasses import asdict
from pathlib import Path

from critiquelab.config import (
    DEFAULT_SYSTEM_PROMPT,
    ModelConfig,
    PretrainConfig,
    TrainConfig,
    WorldConfig,
    key_of,
)
from critiquelab.io import (
    UserError,
    cache_dir,
    check_rows,
    mark_complete,
    output_dir,
    read_json,
    read_jsonl,
    read_marker,
    sha256_dir,
    stable_hash,
    write_json,
)
from critiquelab.machine import cpu_facts, weights_key
from critiquelab.world import check, noisy_solution

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "build_tokenizer", "build_model", "pretrain", "summary_line",
           "critique_style_of",
           "cached_base_model", "cache_dir", "config_key", "shipped_base", "SHIPPED"]

log = logging.getLogger(__name__)

# Bumped whenever the tokenizer / corpus format changes, so stale cached models are not reused.
FORMAT_VERSION = 4
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
# ChatML, as Qwen2 uses. Rendering the prompt alone (with the generation prompt) is a prefix of
# rendering prompt + completion, which TRL's completion-only loss relies on.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)


def corpus_messages(problem: dict, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[dict]:
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": problem["question"]},
        {"role": "assistant", "content": problem["solution"]},
    ]


def critique_messages(problem: dict, rng: random.Random, style: str = "terse") -> list[dict]:
    """A critique conversation in the CFT layout about a noisy (half of the time correct) attempt."""
    from critiquelab.build import cft_prompt
    from critiquelab.config import BuildConfig

    solution = noisy_solution(problem, rng)[0] if rng.random() < 0.5 else problem["solution"]
    return [{"role": "user", "content": cft_prompt(problem["question"], solution, BuildConfig().critique_instruction)},
            {"role": "assistant", "content": check(problem, solution, style).critique}]


def build_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE with single-digit numbers, wrapped as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>", pad_token="<|pad|>",
        unk_token=None, additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
    )
    hf.chat_template = CHAT_TEMPLATE
    hf.padding_side = "left"
    return hf


def build_model(cfg: ModelConfig, tokenizer, seed: int = 0):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False,
    )
    return model


def pretrain(world_dir: str | Path, out_dir: str | Path, model_cfg: ModelConfig,
             cfg: PretrainConfig, max_length: int = 512, *, overwrite: bool = False) -> dict:
    """Train tokenizer and model on the pretrain split into `out_dir` (claimed first; a rerun after
    an interruption resumes from the last checkpoint, and a finished one is not redone)."""
    from critiquelab.train import fit

    corpus = Path(world_dir) / "pretrain.jsonl"
    problems = read_jsonl(corpus, what="pretraining problems")
    check_rows(problems, corpus, {"question": str, "solution": str, "start": int, "steps": list},
               fix="is --world a directory written by `critiquelab world`?")
    fingerprint = stable_hash({"v": FORMAT_VERSION, "corpus": stable_hash(problems), "model": asdict(model_cfg),
                               "pretrain": key_of(cfg), "max_length": max_length})
    with output_dir(out_dir, "model", fingerprint=fingerprint, overwrite=overwrite) as (out, state):
        if state == "done" and (out / "critiquelab_pretrain.json").is_file():
            return read_json(out / "critiquelab_pretrain.json")["stats"]
        tmp_tok = build_tokenizer([p["question"] + "\n" + p["solution"] for p in problems], 64)
        rng = random.Random(cfg.seed)
        # Like web text, the corpus holds worked solutions and, for a share of problems, a critique of
        # a flawed (or sound) attempt, so the base model has seen evaluative text before any CFT.
        convs = [critique_messages(p, rng, cfg.critique_style) if rng.random() < cfg.critique_share else corpus_messages(p)
                 for p in problems]
        texts = [tmp_tok.apply_chat_template(c, tokenize=False) for c in convs]
        tokenizer = build_tokenizer(texts, model_cfg.vocab_size)
        model = build_model(model_cfg, tokenizer, seed=cfg.seed)
        n_params = sum(p.numel() for p in model.parameters())
        log.info("pretraining %.2fM params on %d problems, %d tokens", n_params / 1e6, len(texts), cfg.tokens)
        # Plain language modelling on the whole chat text: measured on the world, this learns to solve
        # faster than a loss on the solutions only (10.8% vs 8.4% after 1.5M tokens).
        rows = [{"text": t} for t in texts]
        train_cfg = TrainConfig(token_budget=cfg.tokens, lr=cfg.lr, batch_size=cfg.batch_size,
                                warmup_ratio=cfg.warmup_ratio, weight_decay=cfg.weight_decay, seed=cfg.seed,
                                max_length=max_length, group_by_length=True)
        stats = fit(model, tokenizer, rows, out, train_cfg, desc="pretrain", repeat=True)
        stats.pop("config", None)
        stats["params"] = n_params
        # what else decided these weights (versions, CPU kernels), so a user can tell which model this is
        write_json(out / "critiquelab_pretrain.json", {"model": asdict(model_cfg), "pretrain": asdict(cfg),
                                                       "stats": stats, "built_with": weights_key(),
                                                       "machine": cpu_facts()})
        mark_complete(out)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return stats


def summary_line(stats: dict, out: str | Path) -> str:
    """`pretrain`'s one-line summary: the model's size and the tokens it saw."""
    return f"pretrained {stats['params'] / 1e6:.2f}M params on {stats['tokens']} tokens -> {out}"


def critique_style_of(base: str | Path) -> str | None:
    """The style of the critiques a base pretrained here read (None: terse, or a base made elsewhere)."""
    stats = Path(base) / "critiquelab_pretrain.json"
    style = (read_json(stats).get("pretrain") or {}).get("critique_style") if stats.is_file() else None
    return None if style == "terse" else style


SHIPPED = Path(__file__).parent / "bases"  # bases built once and shipped, each with its shipped.json


def config_key(world_cfg: WorldConfig, model_cfg: ModelConfig, cfg: PretrainConfig) -> str:
    """The key of the settings a base is pretrained from (the machine's part is added by the cache)."""
    return stable_hash({"v": FORMAT_VERSION, "world": asdict(world_cfg), "model": asdict(model_cfg),
                        "pretrain": key_of(cfg)})


def shipped_base(key: str) -> Path | None:
    """The shipped base pretrained from the settings `key`, its files checked against the sha256
    recorded when it was built (None: none is shipped for them)."""
    for record in sorted(SHIPPED.glob("*/shipped.json")):
        meta = read_json(record)
        if meta.get("key") != key:
            continue
        if sha256_dir(record.parent, skip=("shipped.json",)) != meta["sha256"]:
            raise UserError(f"{record.parent}: the shipped base's files do not match their sha256 in shipped.json; "
                            "reinstall critiquelab, or set pretrain.shipped=false to pretrain one on this machine")
        return record.parent
    return None


def cached_base_model(world_dir: str | Path, world_cfg: WorldConfig, model_cfg: ModelConfig,
                      cfg: PretrainConfig) -> tuple[Path, bool]:
    """Return (path, was_cached) of the base model for these configs: the shipped one for exactly
    these settings (`pretrain.shipped`), else one pretrained on this machine and cached. The cache's key
    holds what else changes the weights (library versions, the CPU's kernels: machine.weights_key),
    so a base built on another kind of CPU or install is never taken for this one's."""
    key = config_key(world_cfg, model_cfg, cfg)
    if cfg.shipped and (shipped := shipped_base(key)) is not None:
        return shipped, True
    key = stable_hash({"v": FORMAT_VERSION, "world": asdict(world_cfg), "model": asdict(model_cfg),
                       "pretrain": key_of(cfg), "built_with": weights_key()})
    path = cache_dir() / "models" / f"base-{key}"
    finished = (read_marker(path) or {}).get("complete") or (path / "critiquelab_pretrain.json").is_file()
    if finished and (path / "config.json").is_file():  # (a cache from before markers has no marker)
        return path, True
    pretrain(world_dir, path, model_cfg, cfg)
    return path, False
