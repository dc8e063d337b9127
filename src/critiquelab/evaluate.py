"""Evaluation: greedy batched generation on benchmarks, graded by final answer.

Inputs: a model dir and benchmark names (`world` is the synthetic test split). Outputs in
`out_dir`: `<benchmark>.jsonl` (one row per item: id, response, extracted answer, correct,
reason, fallback), `results.json` (accuracy, n, 95% Wilson interval, format failures, the answers
the fallback read and how many of them were right, sampling settings) and `results.md`. Items are appended as they are graded, so a rerun after an interruption
only generates what is missing. `eval.data_parallel` / `eval.tensor_parallel` spread the generation
over GPUs (docs/generation-at-scale.md).

    critiquelab eval --model runs/demo/models/cft --benchmarks world --world runs/demo/world --out runs/demo/eval/cft
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np

from critiquelab.answers import FORMAT_FAILURES, grade_as
from critiquelab.config import DEFAULT_SYSTEM_PROMPT, EvalConfig
from critiquelab.grading import FALLBACK
from critiquelab.io import (
    UserError,
    atomic_write,
    check_rows,
    output_dir,
    read_jsonl,
    stable_hash,
    write_json,
)
from critiquelab.llm import (
    HFBackend,
    OpenAIBackend,
    Sampling,
    VLLMBackend,
    check_model,
    check_parallel,
    fit_counts,
    fit_note,
    generate_resumable,
)
from critiquelab.logs import progress_bar
from critiquelab.sources import LETTERS, benchmark_file_name, benchmarks_dir, load_benchmark
from critiquelab.stats import bootstrap, weighted_mean, wilson_ci

__all__ = ["PROMPTS", "conversation", "run_eval", "summarize", "summary_line"]

log = logging.getLogger(__name__)

_SHOTS: dict[Path, list[dict]] = {}  # few-shot turns, read once per benchmarks directory


def _fewshot(question: str, bench_dir=None, k: int = 4) -> list[dict]:
    """k worked GSM8K-train examples as earlier chat turns (the only training split shipped)."""
    path = benchmarks_dir(bench_dir) / "gsm8k" / "train.jsonl"
    if path not in _SHOTS:
        rows = read_jsonl(path)
        check_rows(rows, path, {"question": str, "answer": str}, fix="expected GSM8K rows (answer ends '#### N')")
        shots = []
        for r, line in list(zip(rows, rows.lines, strict=True))[:k]:
            if r["answer"].count("####") != 1:
                raise UserError(f"{path}:{line}: field 'answer' must end with '#### <answer>' (GSM8K layout)")
            work, answer = r["answer"].split("####")
            work = re.sub(r"<<[^>]*>>", "", work).strip()
            shots += [{"role": "user", "content": r["question"]},
                      {"role": "assistant", "content": f"{work}\nThe answer is \\boxed{{{answer.strip()}}}."}]
        _SHOTS[path] = shots
    return [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, *_SHOTS[path], {"role": "user", "content": question}]


PROMPTS = {
    "cot": lambda q, _=None: [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": q}],
    "plain": lambda q, _=None: [{"role": "user", "content": q}],
    "fewshot": _fewshot,
}


def conversation(question: str, prompt: str = "cot", bench_dir=None) -> list[dict]:
    return PROMPTS[prompt](question, bench_dir)


def make_backend(model: str | Path | None, cfg, engine=None):
    """The generation backend named by `cfg.backend` (an EvalConfig, CriticConfig or SampleConfig;
    `engine`: the run's VLLMConfig); `partial(make_backend, model, cfg, engine)` is the picklable
    factory a data-parallel process calls."""
    if cfg.backend == "hf":
        return HFBackend(model, batch_size=cfg.batch_size)
    if cfg.backend == "openai":
        return OpenAIBackend(cfg.base_url, cfg.api_model or str(model), api_key_env=cfg.api_key_env,
                             concurrency=cfg.concurrency)
    if cfg.backend == "vllm":
        return VLLMBackend(model, tensor_parallel_size=cfg.tensor_parallel, engine=engine)
    raise UserError(f"unknown backend {cfg.backend!r} (valid: hf, openai, vllm)")


def check_backend(model: str | Path | None, cfg, section: str) -> None:
    """What the backend needs, checked before any output is written."""
    check_parallel(cfg.backend, cfg.data_parallel, cfg.tensor_parallel, section)
    if cfg.backend == "openai":
        if not cfg.base_url:
            raise UserError(f"{section}.backend=openai needs {section}.base_url (e.g. http://127.0.0.1:8000/v1)")
        if not (cfg.api_model or model):
            raise UserError(f"{section}.backend=openai needs {section}.api_model (the served model's name)")
    else:
        check_model(model, "--model" if section == "eval" else "--critic")


def summarize(items: list[dict]) -> dict:
    n = len(items)
    k = sum(bool(r["correct"]) for r in items)
    lo, hi = wilson_ci(k, n)
    out = {"accuracy": k / n if n else 0.0, "n": n, "correct": k, "ci95": [lo, hi],
           "no_answer": sum(r["reason"] == "no_answer" for r in items),
           "fallback": sum(bool(r.get("fallback")) for r in items),
           "fallback_correct": sum(bool(r.get("fallback")) and bool(r["correct"]) for r in items)}
    kind = items[0].get("answer_type", "math") if items else "math"
    if kind != "math":  # math's results keep their published keys
        out["answer_type"] = kind
        out["several_answers"] = sum(r["reason"] == "several_answers" for r in items)
        out["option_text"] = sum(bool(r.get("option_text")) for r in items)
        out["format_failures"] = sum(r["reason"] in FORMAT_FAILURES or bool(r.get("option_text")) for r in items)
    if any(r.get("permutation") for r in items):
        out.update(_permutation_spread(items))
    return out


def _permutation_spread(items: list[dict]) -> dict:
    """Items answered under several option orders: accuracy per order (mean, min, max, standard
    deviation) and the interval of the mean from a bootstrap over questions (a question's orders
    resampled together)."""
    orders = sorted({r["permutation"] for r in items})
    acc = [float(np.mean([bool(r["correct"]) for r in items if r["permutation"] == j])) for j in orders]
    hits = [float(bool(r["correct"])) for r in items]
    ci = bootstrap(lambda w: weighted_mean(hits, w), len(items), clusters=[r["question_id"] for r in items])
    return {"ci95": ci, "questions": len({r["question_id"] for r in items}),
            "permutations": {"k": len(orders), "accuracy": acc, "min": min(acc), "max": max(acc),
                             "std": float(np.std(acc))}}


def _graded(row: dict, response: str, fallback: str = FALLBACK) -> dict:
    """An item's record; a math row keeps exactly the fields published results have. `fallback`:
    eval.answer_fallback (math answers without a final-answer marker)."""
    kind = row.get("answer_type", "math")
    g = grade_as(kind, response, row.get("answer"), row.get("letters") or LETTERS, options=row.get("options"),
                 question=row.get("question"), fallback=fallback)
    rec = {"id": row["id"], "reference": row.get("answer"), "response": response, "extracted": g.extracted,
           "correct": g.correct, "reason": g.reason, "fallback": g.fallback}
    if kind != "math":
        rec.update(answer_type=kind, option_text=g.option_text,
                   **{k: row[k] for k in ("question_id", "permutation") if k in row})
    return rec


def run_eval(model_dir: str | Path, out_dir: str | Path, cfg: EvalConfig, *, world_dir=None,
             bench_dir=None, backend=None, vllm=None, overwrite: bool = False) -> dict:
    """Every benchmark of `cfg.benchmarks` generated (resumably) and graded; `vllm`: the engine
    settings (VLLMConfig) when `cfg.backend` is vllm."""
    sets = {b: load_benchmark(b, bench_dir=bench_dir, world_dir=world_dir, limit=cfg.limit,
                              answer_type=cfg.answer_type, choice_permutations=cfg.choice_permutations,
                              choice_prompt=cfg.choice_prompt, hf_fields=cfg.hf_fields)
            for b in cfg.benchmarks}  # every name and file is checked before any generation
    if not sets:
        raise UserError("eval.benchmarks: name at least one benchmark (e.g. --benchmarks world,gsm8k)")
    if backend is None:
        check_backend(model_dir, cfg, "eval")
    conversation("", cfg.prompt, bench_dir)  # the few-shot examples are read (and checked) now
    sampling = Sampling(max_new_tokens=cfg.max_new_tokens)
    settings = {"model": str(model_dir), "backend": cfg.backend, "api_model": cfg.api_model, "prompt": cfg.prompt,
                "sampling": sampling.to_dict()}
    results, t0 = {}, time.time()
    with output_dir(out_dir, "eval", fingerprint=stable_hash(settings), overwrite=overwrite) as (out_dir, _):
        made: list = []  # in this process: the backend, made once and only when an item is missing

        def get_backend():
            if not made:
                made.append(backend or make_backend(model_dir, cfg, vllm))
            return made[0]

        parallel = 1 if backend is not None else cfg.data_parallel  # a backend given as an object stays here
        factory = get_backend if parallel == 1 else partial(make_backend, model_dir, cfg, vllm)
        stats: dict = {}

        with progress_bar("eval {task.description}") as progress:
            for name, rows in sets.items():
                task = progress.add_task(name, total=len(rows))
                items = generate_resumable(out_dir / benchmark_file_name(name), rows, factory,
                                           lambda r: conversation(r["question"], cfg.prompt, bench_dir),
                                           partial(_graded, fallback=cfg.answer_fallback),
                                           sampling, chunk=max(cfg.batch_size * 4, 1), settings=settings,
                                           on_batch=lambda n, t=task: progress.advance(t, n), stats=stats,
                                           data_parallel=parallel, tensor_parallel=cfg.tensor_parallel)
                results[name] = summarize(items)
        summary = {"model": str(model_dir), "backend": stats.get("backend", f"{cfg.backend} (all items cached)"),
                   "benchmarks": results, "prompt": cfg.prompt, "sampling": sampling.to_dict(), "config": asdict(cfg),
                   "seconds": round(time.time() - t0, 1), **fit_counts(stats)}
        write_json(out_dir / "results.json", summary)
        typed = any("answer_type" in r for r in results.values())  # math alone: the table as it always was
        lines = ["| benchmark | accuracy | 95% CI | n | no answer |" + (" several answers |" if typed else ""),
                 "|---|---|---|---|---|" + ("---|" if typed else "")]
        for name, r in results.items():
            lines.append(f"| {name} | {100 * r['accuracy']:.1f} | {100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f} "
                         f"| {r['n']} | {r['no_answer']} |" + (f" {r.get('several_answers', 0)} |" if typed else ""))
        with atomic_write(out_dir / "results.md") as f:
            f.write("\n".join(lines) + "\n")
    return summary


def _fallback_note(r: dict) -> str:
    """How many of a benchmark's answers the fallback read (no final-answer marker), and how many
    of those graded right; and for choice, how many were an option's text ("" when none)."""
    notes = [f"{r['fallback']} by fallback, {r.get('fallback_correct', 0)} of them right"] if r.get("fallback") else []
    notes += [f"{r['option_text']} from option text"] if r.get("option_text") else []
    return "".join(f", {n}" for n in notes)


def summary_line(summary: dict, out: str | Path) -> str:
    """`eval`'s one-line summary of `run_eval`'s result: each benchmark's accuracy and size, and
    the answers the fallback read, counted apart."""
    accs = ", ".join(f"{b} {100 * r['accuracy']:.1f}% (n={r['n']}{_fallback_note(r)})"
                     for b, r in summary["benchmarks"].items())
    return f"{accs}{fit_note(summary)}; details in {out}"
