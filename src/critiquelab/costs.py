"""What a grid will take, before it runs (`experiment --dry-run`): the jobs, the GPUs per cell,
estimated GPU-hours, and the teacher's API tokens and money. Reads nothing from the network.

Every figure says where it comes from: measured from files that exist (the training sets of an
earlier run, the benchmark files), or an assumption that is printed with it (`ASSUMPTIONS`).
Estimates are for planning a budget, not promises: real throughput varies 2x with the cluster.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from critiquelab.config import RunConfig, named_sections
from critiquelab.grid import needs_world
from critiquelab.methods import TABLE
from critiquelab.rl import RL_METHODS
from critiquelab.sources import WORLD_BENCHMARKS, load_benchmark

__all__ = ["ASSUMPTIONS", "describe_plan", "estimate", "param_count"]

# Planning assumptions, printed beside the numbers they produce.
ASSUMPTIONS = {
    "gpu_bf16_tflops": 989.0,      # H100 SXM dense bf16 peak (NVIDIA's datasheet)
    "train_mfu": 0.35,             # model FLOPs utilisation of a ZeRO-3 full fine-tune at 7B
    "decode_tokens_per_s_7b": 2500.0,  # vLLM batched decoding of a 7B model on one H100 (scales as 7B / params)
    # a training example with no data at hand (~3.5 chars a token); cgd: question + solution + critique + refinement
    "example_tokens": {"cft": 1150, "sft": 700, "cgd": 1750},
    "teacher_prompt_tokens": 650,  # a critique (or solve) request: template + question + candidate solution
    "teacher_completion_tokens": 800,  # a critique with its corrected solution (GPT-4o in the paper: 500-1000)
    "refine_prompt_tokens": 1450,  # a refine request: a critique request's prompt + the critique it carries
    "refine_completion_tokens": 600,  # a refined solution (a corrected solution, without the critique around it)
    "eval_output_share": 0.5,      # generated tokens per item, as a share of max_new_tokens
    "rl_generated_share": 0.3,     # RL: generated share of generated + trained tokens (world, measured: 91K of 303K)
}


def param_count(model: str, spec=None) -> tuple[float | None, str]:
    """Parameters of a base, and how they were found: a local config.json, the local HF cache, the
    tiny world model's config, or the model's name (e.g. '7B'). Never the network."""
    config = None
    if Path(model).is_dir() and (Path(model) / "config.json").is_file():
        config = json.loads((Path(model) / "config.json").read_text())
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "config.json")
            if isinstance(cached, str):
                config = json.loads(Path(cached).read_text())
        except Exception:  # noqa: BLE001  (no cache: fall back to the name)
            config = None
    if config is None and spec is not None:  # a world model to be pretrained
        m = spec.model
        config = {"hidden_size": m.hidden_size, "num_hidden_layers": m.num_layers, "vocab_size": m.vocab_size,
                  "intermediate_size": m.intermediate_size, "num_attention_heads": m.num_heads,
                  "num_key_value_heads": m.num_kv_heads, "tie_word_embeddings": True}
    if config is not None and all(k in config for k in ("hidden_size", "num_hidden_layers", "vocab_size")):
        h, n, v = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
        inter = config.get("intermediate_size", 4 * h)
        heads = config.get("num_attention_heads", 1)
        kv = h * config.get("num_key_value_heads", heads) // max(1, heads)
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter
        embed = v * h * (1 if config.get("tie_word_embeddings") else 2)
        return float(n * per_layer + embed), "config.json"
    if m := re.search(r"(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", Path(model).name):
        return float(m[1]) * 1e9, "from the name"
    return None, "unknown"


@dataclass
class _Row:
    what: str
    value: str
    source: str


def _gpus_per_cell(cfg: RunConfig) -> int:
    ex = cfg.experiment
    if ex.executor == "slurm":
        return max(1, ex.slurm.nodes * ex.slurm.gpus_per_node)
    if cfg.train.launcher == "accelerate" and cfg.train.num_processes:
        return cfg.train.num_processes
    return max(1, ex.gpus_per_cell)


def _generation_hours(prompts: float, max_new_tokens: int, params: float | None) -> float | None:
    """GPU-hours to generate for `prompts` prompts of up to `max_new_tokens` new tokens (eval_output_share
    of them on average) with a model of `params` parameters (None: unknown)."""
    a = ASSUMPTIONS
    return prompts * max_new_tokens * a["eval_output_share"] / (a["decode_tokens_per_s_7b"] * 7e9 / params) / 3600 \
        if params else None


def estimate(cfg: RunConfig, plan, questions: dict[str, tuple[int, str]], bench_dir=None) -> dict:
    """The job plan of `plan` (experiment.Plan): per model x method the cells, GPUs, training
    tokens and GPU-hours; per source x teacher the API requests, tokens and cost. `questions`:
    source -> (training questions, where that number comes from)."""
    a = ASSUMPTIONS
    gpus = _gpus_per_cell(cfg)
    bench_items, bench_note = 0, []
    for b in cfg.eval.benchmarks:
        if b in WORLD_BENCHMARKS:
            bench_items += cfg.world.n_validation if b == "world-validation" else cfg.world.n_test
            continue
        try:
            bench_items += len(load_benchmark(b, bench_dir=bench_dir, limit=cfg.eval.limit,
                                              choice_permutations=cfg.eval.choice_permutations))
        except Exception as e:  # noqa: BLE001
            bench_note.append(f"{b}: not counted ({e})")
    rows, total_gpu_h = [], 0.0
    trained = [c for c in plan.cells if c.method != "base"]
    for name, spec in plan.models.items():
        params, how = param_count(spec.base_model or "", spec if not spec.base_model else None)
        cells = [c for c in plan.cells if c.model == name]
        decode = a["decode_tokens_per_s_7b"] * 7e9 / params if params else None
        eval_h = _generation_hours(bench_items, cfg.eval.max_new_tokens, params)
        for method in dict.fromkeys(c.method for c in cells):
            mine = [c for c in cells if c.method == method]
            per = a["example_tokens"].get(TABLE[method].kind, a["example_tokens"]["sft"])

            def tokens(c, per=per) -> float:  # one fine-tune of cell c (RL: generated + trained tokens)
                if c.method == "base":
                    return 0.0
                if c.method in RL_METHODS:
                    return float(cfg.rl.token_budget or cfg.train.token_budget)  # (the plan requires one)
                if cfg.train.token_budget > 0:
                    return float(cfg.train.token_budget)
                n = (c.data_size or questions[c.source][0]) * _per_problem(plan.sources[c.source])
                if TABLE[c.method].kind == "cft" and cfg.build.critiques_per_solution == "all":
                    n *= max(1, len(plan.teachers[c.teacher].panel))  # every teacher's critique (before filters)
                return n * per * cfg.train.epochs

            runs = [tokens(c) for c in mine]  # every cell, plus the grid's other rates on each first seed
            if cfg.lr_grid and method != "base" and method not in RL_METHODS:
                runs += [tokens(c) for c in mine if c.seed == cfg.seeds[0]] * (len(cfg.lr_grid) - 1)
            train_h = select_h = 0.0
            for t in runs:
                if params is None:
                    break
                flops = 6 * params * t * (4 / 3 if cfg.train.gradient_checkpointing else 1)
                train_h += flops / (a["gpu_bf16_tflops"] * 1e12 * a["train_mfu"]) / 3600
                if method in RL_METHODS:  # its completions are decoded too; no checkpoint selection
                    train_h += t * a["rl_generated_share"] / decode / 3600 if decode else 0.0
                    continue
                saves = cfg.train.save_steps > 0 or cfg.train.save_epochs
                if method != "base" and cfg.train.select_best_on and saves and decode:
                    steps = t / per / (cfg.train.batch_size * cfg.train.grad_accum * gpus)  # every checkpoint scored
                    checkpoints = max(1, round(cfg.train.epochs) if cfg.train.save_epochs and not cfg.train.token_budget
                                      else int(steps // max(cfg.train.save_steps, 1)))
                    select_h += _generation_hours(checkpoints * (cfg.train.select_limit or 500),
                                                  cfg.train.select_max_new_tokens, params)
            gpu_h = train_h + select_h + eval_h * len(mine) if params and eval_h is not None else None
            total_gpu_h += gpu_h or 0.0
            rows.append({"model": name, "method": method, "runs": len(runs), "params": params, "params_from": how,
                         "gpus_per_cell": gpus, "train_tokens_per_run": round(max(runs)),
                         "train_gpu_hours_per_run": _r(train_h / len(runs)) if params else None,
                         "select_gpu_hours_per_run": _r(select_h / len(runs)) if params else None,
                         "eval_gpu_hours_per_run": _r(eval_h), "gpu_hours": _r(gpu_h)})
    sampling = []  # the noisy solutions a model source writes (the student's own answers), per model x source
    for name, spec in plan.models.items():
        for src, scfg in plan.sources.items():
            writer = spec.base_model if scfg.model in (None, "@base") else scfg.model
            if scfg.source != "model" or scfg.generators or writer is None or writer.startswith("@"):
                continue  # (generators and aux models: not planned)
            params, _ = param_count(writer)
            answers = questions[src][0] * scfg.n_per_problem
            hours = _generation_hours(answers, scfg.max_new_tokens, params)
            total_gpu_h += hours or 0.0
            sampling.append({"model": name, "source": src, "writer": writer, "answers": answers, "gpu_hours": _r(hours)})
    api = []
    passes = [("critiques", a["teacher_prompt_tokens"], a["teacher_completion_tokens"])]  # the teacher's passes
    if any(TABLE[m].teacher_solves for m in cfg.build.methods if m in TABLE):  # its own solutions
        passes.append(("own solutions", a["teacher_prompt_tokens"], a["teacher_completion_tokens"]))
    if any(TABLE[m].teacher_refines for m in cfg.build.methods if m in TABLE):  # refinements from its critiques
        passes.append(("refinements", a["refine_prompt_tokens"], a["refine_completion_tokens"]))
    for src, scfg in plan.sources.items():
        per_problem = _per_problem(scfg)
        teachers = []  # a panel's teachers one by one
        for tch, tcfg in plan.teachers.items():
            panel = named_sections(replace(tcfg, panel={}), tcfg.panel, "", [])
            teachers += [(f"{tch}.{n}", t) for n, t in panel.items()] or [(tch, tcfg)]
        for tch, tcfg in teachers:
            if tcfg.teacher != "openai":
                continue
            items = questions[src][0] * per_problem
            per_model = scfg.source != "import" and len(plan.models) > 1  # imported rows are critiqued once
            calls = items * (len(plan.models) if per_model else 1)
            known = tcfg.price_in_per_mtok is not None and tcfg.price_out_per_mtok is not None
            factor = tcfg.batch_price_factor if tcfg.api_mode == "batch" else 1.0  # the Batch API's discount
            for what, p_each, c_each in passes:
                p_tok, c_tok = calls * p_each, calls * c_each
                cost = factor * (p_tok / 1e6 * tcfg.price_in_per_mtok + c_tok / 1e6 * tcfg.price_out_per_mtok) \
                    if known else None
                api.append({"source": src, "teacher": tch, "model": tcfg.model, "pass": what, "requests": calls,
                            "prompt_tokens": p_tok, "completion_tokens": c_tok, "cost_usd": _r(cost, 2),
                            "price_per_mtok": [tcfg.price_in_per_mtok, tcfg.price_out_per_mtok],
                            "api_mode": tcfg.api_mode,
                            "batch_price_factor": tcfg.batch_price_factor if tcfg.api_mode == "batch" else None,
                            "price_source": tcfg.price_source or ("not given" if known else "price unknown")})
    return {"cells": len(plan.cells), "trained_cells": len(trained), "gpus_per_cell": gpus, "rows": rows,
            "gpu_hours": round(total_gpu_h, 1), "benchmark_items": bench_items, "benchmark_notes": bench_note,
            "questions": {s: {"n": n, "from": how} for s, (n, how) in questions.items()},
            "sampling": sampling, "api": api, "api_cost_usd": _r(sum(x["cost_usd"] for x in api if x["cost_usd"] is not None), 2),
            "assumptions": ASSUMPTIONS}


def describe_plan(cfg: RunConfig, plan, bench_dir=None) -> str:
    """The dry run's job plan in words: executor, GPUs, GPU-hours and API cost, each with its source."""
    est = estimate(cfg, plan, plan.questions, bench_dir)
    ex = cfg.experiment
    where = {"local": "in this process", "subprocess": f"{ex.parallel_cells} child process(es) at once",
             "slurm": f"Slurm jobs (partition {ex.slurm.partition or 'default'}, {ex.slurm.nodes} node(s) x "
                      f"{ex.slurm.gpus_per_node} GPU(s), {ex.slurm.time_min} min)"}[ex.executor]
    lines = ["", f"job plan: {est['trained_cells']} fine-tunes + {len(plan.models)} base evaluations, executor "
                 f"{ex.executor} ({where}); {est['gpus_per_cell']} GPU(s) per cell; world: "
                 f"{'generated' if needs_world(cfg, plan) else 'none (no source, base or benchmark uses it)'}"]
    lines += [f"  source {src}: {q['n']} training questions ({q['from']})" for src, q in est["questions"].items()]
    lines.append(f"  evaluation: {est['benchmark_items']} items per model ({', '.join(cfg.eval.benchmarks)}; "
                 f"{cfg.eval.max_new_tokens} new tokens at most)" + "".join(f"; {n}" for n in est["benchmark_notes"]))
    lines.append("  model\tmethod\truns\tparams\ttrain tokens/run\ttrain GPU-h/run\tselection GPU-h/run\t"
                 "eval GPU-h/run\tGPU-h")
    for r in est["rows"]:
        n = r["params"] or 0
        params = f"{n / 1e9:.2f}B ({r['params_from']})" if n >= 1e8 else \
            f"{n / 1e6:.2f}M ({r['params_from']})" if n else "unknown"
        lines.append(f"  {r['model']}\t{r['method']}\t{r['runs']}\t{params}\t{r['train_tokens_per_run']:,}\t"
                     f"{r['train_gpu_hours_per_run']}\t{r['select_gpu_hours_per_run']}\t{r['eval_gpu_hours_per_run']}\t"
                     f"{r['gpu_hours']}")
    lines += [f"  sampling: {s['writer']} writes {s['answers']:,} answers for source {s['source']} (model {s['model']}): "
              f"{s['gpu_hours']} GPU-h (sample.max_new_tokens x eval_output_share)" for s in est["sampling"]]
    lines.append(f"  estimated GPU-hours in all: {est['gpu_hours']:,} (H100-equivalent; assumptions below)")
    for a in est["api"]:
        cost = f"${a['cost_usd']:,}" if a["cost_usd"] is not None else "cost unknown (set critique.price_*_per_mtok)"
        lines.append(f"  teacher {a['teacher']} ({a['model']}) on source {a['source']}, {a['pass']}: "
                     f"{a['requests']:,} requests, ~{a['prompt_tokens']:,} prompt + ~{a['completion_tokens']:,} completion tokens, {cost} at "
                     f"${a['price_per_mtok'][0]}/${a['price_per_mtok'][1]} per 1M tokens"
                     + (f" x {a['batch_price_factor']} (Batch API)" if a["batch_price_factor"] else "")
                     + f" (price source: {a['price_source']})")
    if est["api"]:
        lines.append(f"  estimated API cost in all: ${est['api_cost_usd']:,}")
    lines.append("  assumptions: " + "; ".join(f"{k}={v}" for k, v in est["assumptions"].items()))
    lines += [f"  MISSING: {m}" for m in plan.missing]
    return "\n".join(lines)


def _per_problem(scfg) -> int:
    """Solutions per question: the section's n, or the sum over its generators."""
    return sum(g.get("n_per_problem", scfg.n_per_problem) for g in scfg.generators.values()) \
        if scfg.generators else scfg.n_per_problem


def _r(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)
