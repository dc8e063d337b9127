"""Critiques of candidate solutions by a teacher, into an append-only store that loses nothing;
with other prompts the same stage has the teacher solve, or refine a solution from its critique.

Teachers: `checker` (the synthetic world's exact step checker; offline and exact; with
`checker_noise: p` a weak teacher that gets a share p of its items wrong), `openai` (any
OpenAI-compatible endpoint through the official async client, or its Batch API) and `hf` / `vllm`
(a local model).

A prompt's `task` (`TASKS`) says what the teacher writes; one code path serves all three:
- `critique` (the default): a critique of each solution and its verdict, into `critiques.jsonl`;
- `solve` (`solve_paper`): the teacher's own solution of each question, into `solutions.jsonl`;
- `refine` (`refine_paper`, `critiquelab refine`): a refined solution that fixes what the critique
  of the solution found, into `refined.jsonl` (Critique-Guided Distillation, arXiv 2505.11628). Its
  input is the same `solutions.jsonl` plus the critique store of those solutions (`--critiques`):
  each solution is joined with its latest ok critique of that very text (by id and the hash of
  question + solution, as `build` pairs them), and solutions without one are skipped with a count.
  The checker refines exactly: a solution its critique calls right is kept as it is, any other is
  replaced by its correction (the true steps and boxed answer, `world.corrected_solution`).

Input: `solutions.jsonl` from `sample` (and, to refine, `critiques.jsonl`). Output directory:
- the store (`critiques.jsonl`, `solutions.jsonl` or `refined.jsonl`), one line per attempt
  outcome: `key`, `id`, `input`, `problem_id`, `status` (ok / failed), `critique` and `verdict`
  (right / wrong / None) or `solution`, `teacher`, `usage`, `error`. The key hashes (item id,
  input hash, prompt, teacher, sampling settings); the input hash covers the question and the
  solution, and for a refinement the critique too, so a changed text is redone, never paired with
  an old answer. A rerun skips keys already `ok`, retries `failed` ones, and readers take the
  latest record per key, so a crash or `kill -9` loses nothing and duplicates nothing.
- `ledger.json`: tokens and cost (prices per model from the config), recomputed from the store.

API keys are read from the environment variable named in the config and never written.

    critiquelab critique --input runs/x/solutions.jsonl --out runs/x/critique critique.teacher=openai \\
        critique.base_url=https://api.openai.com/v1 critique.model=gpt-4o-2024-11-20 --dry-run
    critiquelab refine --input runs/x/solutions.jsonl --critiques runs/x/critique/critiques.jsonl \\
        --out runs/x/refine critique.teacher=checker
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import string
import time
from collections import Counter
from dataclasses import dataclass, replace
from functools import partial
from importlib import resources
from pathlib import Path

import yaml

from critiquelab.config import CritiqueConfig, named_sections
from critiquelab.io import (
    Incomplete,
    Rows,
    Store,
    UserError,
    check_rows,
    output_dir,
    read_jsonl,
    read_text,
    refused_hint,
    served_context,
    stable_hash,
    write_json,
)
from critiquelab.llm import (
    BadResponse,
    chat,
    check_endpoint,
    check_model,
    check_parallel,
    is_local_url,
    openai_client,
    retrying,
)
from critiquelab.logs import progress_bar
from critiquelab.world import CheckResult, check, corrected_solution, mistaken_critique, noisy_solution

__all__ = ["TASKS", "Task", "parse_verdict", "load_prompt", "render", "shard_filter", "input_hash", "read_items",
           "read_store", "read_critiques", "latest_ok", "run_critique", "describe_estimate", "summary_line"]

log = logging.getLogger(__name__)

_VERDICT = re.compile(r"Conclusion:\s*\**\s*(right|wrong|correct|incorrect)\b", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """'right' / 'wrong' from the last `Conclusion: ...`; None when there is none (never guessed)."""
    found = _VERDICT.findall(text or "")
    if not found:
        return None
    v = found[-1].lower()
    return "right" if v in ("right", "correct") else "wrong"


@dataclass(frozen=True)
class Task:
    """What a prompt's `task` has the teacher write, and what it reads."""

    store: str                 # the store's file name in the output directory
    reads: tuple[str, ...]     # the fields of an item the teacher reads beside `question`
    writes: str                # the record's field holding the teacher's text
    what: str                  # the texts' name in messages
    kind: str = "critique"     # the output directory's kind (io.output_dir)
    required: tuple[str, ...] = ()  # placeholders its prompt must use


TASKS = {
    "critique": Task("critiques.jsonl", ("solution",), "critique", "critiques"),
    "solve": Task("solutions.jsonl", (), "solution", "solutions"),
    "refine": Task("refined.jsonl", ("solution", "critique"), "solution", "refined solutions", kind="refine",
                   required=("question", "solution", "critique")),
}


def _placeholders(task: str) -> tuple[str, ...]:
    """The placeholders a prompt of `task` may use ({solution} in any: a solve prompt may show it)."""
    return ("question", "solution", *(f for f in TASKS[task].reads if f != "solution"))


def _listed(names) -> str:
    names = [f"{{{n}}}" for n in names]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def load_prompt(name: str) -> dict:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        text = read_text(path, "prompt template")
    else:
        try:
            text = resources.files("critiquelab").joinpath("prompts", f"{name}.yaml").read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"critique.prompt={name!r}: no such template (a name in critiquelab/prompts or a .yaml path)") from None
    try:
        prompt = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"critique.prompt={name!r}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(prompt, dict) or not isinstance(prompt.get("user"), str) or not isinstance(
            prompt.get("system", ""), str):
        raise UserError(f"critique prompt {name!r}: needs a 'user' template text (and optionally a 'system' text)")
    task = prompt.get("task", "critique")
    if task not in TASKS:
        raise UserError(f"critique prompt {name!r}: task {task!r} (use {', '.join(TASKS)})")
    allowed = _placeholders(task)
    try:
        prompt["user"].format(**dict.fromkeys(allowed, "x"))
    except (KeyError, IndexError, ValueError) as e:
        raise UserError(f"critique prompt {name!r}: the user template may only use {_listed(allowed)} "
                        f"(write other braces as {{{{ and }}}}): {type(e).__name__} {e}") from None
    used = {f for _, f, _, _ in string.Formatter().parse(prompt["user"]) if f}
    if missing := [f for f in TASKS[task].required if f not in used]:
        raise UserError(f"{task} prompt {name!r}: the user template never uses {_listed(missing)}; a {task} prompt "
                        f"shows the teacher {_listed(TASKS[task].required)}")
    return prompt


def render(prompt: dict, row: dict) -> list[dict]:
    messages = [{"role": "system", "content": prompt["system"]}] if prompt.get("system") else []
    fields = {"question": row["question"], "solution": row.get("solution") or "", "critique": row.get("critique") or ""}
    return messages + [{"role": "user", "content": prompt["user"].format(**fields)}]


def shard_filter(rows: list[dict], shard: str | None) -> list[dict]:
    """Keep the rows of shard `i/n` (by a stable hash of the id), so n machines split one job."""
    if not shard:
        return rows
    m = re.fullmatch(r"(\d+)/(\d+)", shard)
    if not m or not 0 <= int(m[1]) < int(m[2]):
        raise UserError(f"--shard {shard!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    i, n = int(m[1]), int(m[2])
    return [r for r in rows if int(stable_hash(r["id"]), 16) % n == i]


def input_hash(row: dict, task: str = "critique") -> str:
    """What a critique (or a teacher's solution) is of: the question and the solution text; what a
    refinement is of: those and the critique text. A text changed under an unchanged id gets a new
    hash, so it is done again and never paired with the old answer."""
    fields = {"question": row["question"], "solution": row.get("solution")}
    if "critique" in TASKS[task].reads:
        fields["critique"] = row["critique"]
    return stable_hash(fields, 16)


def read_store(path: str | Path) -> dict[str, dict]:
    """Latest record per key (a torn last line from a killed run is ignored)."""
    return Store(path).read()


def latest_ok(path: str | Path) -> dict[tuple[str, str], dict]:
    """(item id, input hash) -> its successful critique (or teacher solution)."""
    return {(r["id"], r.get("input")): r for r in read_store(path).values() if r["status"] == "ok"}


def _teacher_id(cfg: CritiqueConfig) -> str:
    if cfg.teacher == "checker":
        name = "checker" if cfg.checker_style in (None, "terse") else f"checker[{cfg.checker_style}]"
        return f"{name}(noise={cfg.checker_noise},seed={cfg.seed})" if cfg.checker_noise else name
    return f"{cfg.teacher}:{cfg.model}"


def _sampling(cfg: CritiqueConfig) -> dict:
    return {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens, "seed": cfg.seed}


STORE_FIELDS = {"key": str, "id": (str, int), "status": str, "input": str}
STORES = {"--critiques": ("critique", "<critique --out>/critiques.jsonl"),  # what an ok record carries, where
          "--teacher-solutions": ("solution", "<critique --out>/solutions.jsonl"),
          "--refined": ("solution", "<refine --out>/refined.jsonl")}


def read_critiques(path: str | Path, what: str = "--critiques", needed: bool = True) -> dict:
    """The ok records of a store of this stage (`--critiques`: critiques; `--teacher-solutions`: a
    solving run's solutions; `--refined`: a refining run's), by (id, input hash), every row checked;
    the file must exist, and hold records when `needed`."""
    text, where = STORES[what]
    fix = f"expected the store written by `critiquelab {'refine' if what == '--refined' else 'critique'}`"
    if not Path(path).exists():
        raise UserError(f"{what} {path}: file not found (the store is {where})")
    rows = read_jsonl(path, tolerate_torn_tail=True)
    if not rows and needed:
        raise UserError(f"{what} {path}: no {text}s (the store is empty)" if what != "--critiques" else
                        f"{what} {path}: no critiques (the store is empty)")
    check_rows(rows, path, STORE_FIELDS, optional={"critique": str, "verdict": str, "solution": str}, fix=fix)
    ok = [(r, line) for r, line in zip(rows, rows.lines, strict=True) if r["status"] == "ok"]
    check_rows(Rows([r for r, _ in ok], [line for _, line in ok]), path, {text: str}, fix=fix)
    return latest_ok(path)


def read_items(path: str | Path, task: str = "critique", critiques: str | Path | None = None) -> list[dict]:
    """The items of `task`: every row needs a unique `id` and a `question`; a critique or a
    refinement needs a `solution` text. An empty solution (a model that wrote nothing) is skipped
    with a count, not sent to the teacher (a teacher that solves needs none). A refinement's items
    are the solutions joined with their critiques (`critiques`, the critique store of this file)."""
    rows = read_jsonl(path, what=f"solutions to {task}")
    solution = {"solution": str} if "solution" in TASKS[task].reads else {}
    check_rows(rows, path, {"id": (str, int), "question": str, **solution},
               optional={"solution": str, "problem_id": (str, int)}, unique="id",
               fix="each row needs id, question and solution (see docs/formats.md)")
    kept = [r for r in rows if not solution or r["solution"].strip()]
    if len(kept) < len(rows):
        log.warning("%s: %d empty solutions skipped", task, len(rows) - len(kept))
    if "critique" not in TASKS[task].reads:
        return kept
    found = read_critiques(critiques)
    joined = [{**r, "critique": c["critique"], "verdict": c.get("verdict")}
              for r in kept if (c := found.get((r["id"], input_hash(r))))]
    if not joined:
        raise UserError(f"--critiques {critiques}: none of its ok critiques is of a solution in {path} (a critique "
                        "pairs with the very text it read: give the critique store written from this solutions file)")
    if len(joined) < len(kept):
        log.warning("%s: %d solutions without an ok critique in %s skipped (critique them first)", task,
                    len(kept) - len(joined), critiques)
    return joined


def _check_teacher(cfg: CritiqueConfig, rows: list[dict], path, task: str) -> None:
    """What the teacher needs, checked before anything is written or sent."""
    if cfg.teacher == "checker":
        for r in rows:
            needs = ["start", "steps"] + (["reference_solution"] if task == "solve" else [])
            if any(k not in r for k in needs):
                raise UserError(f"{path}: item {r['id']}: the checker teacher needs world problems "
                                f"({', '.join(needs)}); for your own data use critique.teacher=openai, hf or vllm")
    elif cfg.teacher in ("hf", "vllm"):
        if not cfg.model:
            raise UserError(f"critique.teacher={cfg.teacher} needs critique.model (a model directory or hub name)")
        check_model(cfg.model, "critique.model")
    elif cfg.teacher == "openai":
        if not cfg.base_url or not cfg.model:
            raise UserError("critique.teacher=openai needs critique.base_url and critique.model")
        if not os.environ.get(cfg.api_key_env) and not is_local_url(cfg.base_url):
            raise UserError(f"critique: set the API key in the environment variable {cfg.api_key_env}")
    if cfg.teacher != "checker":
        check_parallel(cfg.teacher, cfg.data_parallel, cfg.tensor_parallel, "critique")


def _panel(cfg: CritiqueConfig) -> list[tuple[str | None, CritiqueConfig]]:
    """The teachers of one run: `critique.panel` (name -> overrides of this section), or the section."""
    if not cfg.panel:
        return [(None, cfg)]
    errors: list[str] = []
    teachers = named_sections(replace(cfg, panel={}), cfg.panel, "critique.panel", errors)
    if errors:
        raise UserError("invalid critique.panel: " + "; ".join(errors))
    return list(teachers.items())


def run_critique(solutions_path: str | Path, out_dir: str | Path, cfg: CritiqueConfig, *,
                 critiques: str | Path | None = None, shard: str | None = None, dry_run: bool = False, vllm=None,
                 overwrite: bool = False) -> dict:
    """Critique (or, with a `task: solve` prompt, solve; with a `task: refine` prompt, refine each
    solution from its critique in the store `critiques`) every item not yet done, by every teacher
    of `critique.panel` (or the one teacher), into one store: the teacher is part of each item's
    key, and each record names it. Raises `Incomplete` (with the summary) when items failed: a
    rerun retries exactly those."""
    plans = []  # (name, teacher config, prompt, fixed, keyed)
    teachers = _panel(cfg)
    tasks = {load_prompt(t.prompt).get("task", "critique") for _, t in teachers}
    if len(tasks) > 1:
        raise UserError(f"critique.panel: every teacher's prompt must have the same task ({', '.join(TASKS)})")
    task = tasks.pop()
    if task == "refine" and critiques is None:
        raise UserError(f"critique.prompt={cfg.prompt!r} is a refine prompt: it needs the critiques; run `critiquelab "
                        "refine --input SOLUTIONS --critiques CRITIQUES --out DIR`")
    if task != "refine" and critiques is not None:
        raise UserError(f"--critiques: only a refine prompt reads critiques, and {cfg.prompt!r} has task {task} "
                        "(set critique.refine_prompt to a prompt with `task: refine`, e.g. refine_paper)")
    rows = shard_filter(read_items(solutions_path, task, critiques), shard)
    for name, t in teachers:
        _check_teacher(t, rows, solutions_path, task)
        prompt = load_prompt(t.prompt) if t.teacher != "checker" else {"user": f"exact step checker: {task}"}
        fixed = {"prompt": stable_hash(prompt), "teacher": _teacher_id(t),
                 "sampling": _sampling(t) if t.teacher != "checker" else None}
        keyed = [(stable_hash({**fixed, "id": r["id"], "input": input_hash(r, task)}, 16), r) for r in rows]
        plans.append((name, t, prompt, fixed, keyed))
    if len({p[3]["teacher"] + str(p[3]["sampling"]) + p[3]["prompt"] for p in plans}) < len(plans):
        raise UserError("critique.panel: two teachers have the same model, prompt and sampling; their critiques "
                        "would be one (change the seed or the temperature of one)")
    store_name = TASKS[task].store
    if dry_run:
        done = read_store(Path(out_dir) / store_name) if (Path(out_dir) / store_name).is_file() else {}
        ests = {name: _estimate([(k, r) for k, r in keyed if done.get(k, {}).get("status") != "ok"], prompt, t,
                                done.values(), task) for name, t, prompt, _, keyed in plans}
        return ests[None] if None in ests else {"dry_run": True, **{
            k: sum(e[k] or 0 for e in ests.values()) for k in ("items_to_do", "prompt_tokens_est",
                                                               "completion_tokens_max", "cost_usd_max")},
            "teachers": ests}
    fingerprint = stable_hash(plans[0][3]) if len(plans) == 1 else stable_hash([p[3] for p in plans])
    with output_dir(out_dir, TASKS[task].kind, fingerprint=fingerprint, overwrite=overwrite) as (out, _):
        store = Store(out / store_name)
        store.repair()  # even when nothing is left to do, a torn line from a kill does not stay
        summaries = {}
        for name, t, prompt, fixed, keyed in plans:
            done = store.read()
            todo = [(k, r) for k, r in keyed if done.get(k, {}).get("status") != "ok"]
            log.info("%s%s: %d items, %d already done, %d to do", task, f" ({name})" if name else "", len(keyed),
                     len(keyed) - len(todo), len(todo))
            base = lambda k, r, f=fixed, n=name: {  # noqa: E731
                "key": k, "id": r["id"], "input": input_hash(r, task), "problem_id": r.get("problem_id"),
                "teacher": f["teacher"], **({"teacher_name": n} if n else {})}
            if t.teacher in ("hf", "vllm"):  # resumable itself (it also merges an interrupted parallel run)
                _local_teacher(keyed, prompt, t, store.path, base, task, vllm)
            elif not todo:
                pass
            elif t.teacher == "checker":
                store.append(_checker_records(todo, t, task, base))
            elif t.api_mode == "batch":
                from critiquelab.batch import run_batches

                run_batches(todo, lambda r, p=prompt: render(p, r), t, store, base,
                            lambda k, r, text, usage, b=base: {**b(k, r), "status": "ok", **_response(task, text),
                                                               "usage": usage}, out)
            else:
                asyncio.run(_api_run(todo, prompt, t, store, base, task))
            summaries[name] = _summarize(store, [k for k, _ in keyed], t, out, name)
    summary = {**(summaries[None] if None in summaries else _combine(summaries)), "task": task}
    if summary["refused"]:  # a rerun would be refused again: bad input (exit 2), not incomplete
        refused = next(r for r in Store(Path(out_dir) / store_name).read().values() if r.get("refused"))
        raise UserError(f"critique: the endpoint refused {summary['refused']} of {summary['items']} items (item "
                        f"{refused['id']}: {refused['error']}); a rerun would be refused the same way: fix those "
                        f"items or the settings; finished items are kept in {Path(out_dir) / store_name}")
    if summary["failed"] or summary["ok"] < summary["items"]:
        top = ", ".join(f"{n} {e}" for e, n in summary["errors"].most_common(3))
        raise Incomplete(f"{summary['failed']} of {summary['items']} items failed ({top}); finished items are kept "
                         f"in {store.path}; rerun the same command to retry the failed ones", summary)
    return summary


def _combine(summaries: dict[str, dict]) -> dict:
    """A panel's summary: the teachers' counts added up (cost unknown if any teacher's is)."""
    total: dict = {"teachers": summaries, "errors": Counter()}
    for s in summaries.values():
        for k in ("items", "ok", "failed", "refused", "right", "wrong", "no_verdict", "prompt_tokens",
                  "completion_tokens", "lost_requests"):
            total[k] = total.get(k, 0) + s[k]
        total["errors"].update(s["errors"])
    costs = [s["cost_usd"] for s in summaries.values()]
    total["cost_usd"] = None if None in costs else round(sum(costs), 4)
    return total


def _local_teacher(keyed, prompt: dict, cfg: CritiqueConfig, path: Path, base, task: str, vllm=None) -> None:
    """A local model (hf / vllm) as the teacher, through `generate_resumable` in chunks of 256, in
    `critique.data_parallel` processes. Its records are always `ok`, so a key in the store is done."""
    from critiquelab.llm import HFBackend, Sampling, VLLMBackend, generate_resumable

    backend = partial(HFBackend, cfg.model) if cfg.teacher == "hf" else \
        partial(VLLMBackend, cfg.model, tensor_parallel_size=cfg.tensor_parallel, engine=vllm)
    sampling = Sampling(max_new_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed)
    generate_resumable(path, keyed, backend, lambda kr: render(prompt, kr[1]),
                       lambda kr, text: {**base(*kr), "status": "ok", **_response(task, text), "usage": None},
                       sampling, chunk=256, keys=[k for k, _ in keyed], data_parallel=cfg.data_parallel,
                       tensor_parallel=cfg.tensor_parallel)


def _checker_records(todo, cfg: CritiqueConfig, task: str, base) -> list[dict]:
    recs = []
    for k, r in todo:
        rng = random.Random(stable_hash({"seed": cfg.seed, "id": r["id"]}))
        if task in ("solve", "refine"):  # exact steps; a weak checker slips on a share of them
            # refine follows the critique: a solution it calls right is kept, any other corrected
            exact = r["reference_solution"] if task == "solve" else r["solution"] if r.get("verdict") == "right" \
                else corrected_solution(r, r["solution"])
            wrong = rng.random() < cfg.checker_noise
            text = noisy_solution(r, rng)[0] if wrong else exact
            recs.append({**base(k, r), "status": "ok", "solution": text, "verdict": None, "usage": None})
            continue
        res = check(r, r["solution"], cfg.checker_style or "terse")
        if rng.random() < cfg.checker_noise:  # a deliberately weak teacher: the verdict is wrong
            res = CheckResult(not res.correct, mistaken_critique(r, r["solution"], rng, cfg.checker_style or "terse"))
        recs.append({**base(k, r), "status": "ok", "critique": res.critique,
                     "verdict": parse_verdict(res.critique), "error_step": res.error_step,
                     "error_kind": res.error_kind, "usage": None})
    return recs


PRICE_UNKNOWN = "price unknown: set critique.price_in_per_mtok and critique.price_out_per_mtok (USD per 1M tokens)"


def _cost(cfg: CritiqueConfig, prompt_tokens: float, completion_tokens: float) -> float | None:
    """USD, or None when the price is not known (never a made-up $0 for an API teacher)."""
    if cfg.teacher != "openai":
        return 0.0  # a local teacher: no API bill
    if cfg.price_in_per_mtok is None or cfg.price_out_per_mtok is None:
        return None
    return round(prompt_tokens / 1e6 * cfg.price_in_per_mtok + completion_tokens / 1e6 * cfg.price_out_per_mtok, 4)


def _summarize(store: Store, keys: list[str], cfg: CritiqueConfig, out_dir: Path,
               name: str | None = None) -> dict:
    """The summary of this run's items, and the ledger of every request the store has seen.

    A request the endpoint may have completed (and billed) but whose answer the client lost (a
    timeout, a cut connection, a body that was not a chat completion) counts as `lost`; its
    tokens are estimated from the answered ones and marked as an estimate. In a panel's store, each
    teacher (`name`) has its own ledger, `ledger-<name>.json`, of its own records."""
    rows = [r for r in store.rows() if name is None or r.get("teacher_name") == name]
    latest = {r["key"]: r for r in rows}
    mine = [latest[k] for k in keys if k in latest]
    ok = [r for r in mine if r["status"] == "ok"]
    answered = [r for r in rows if r["status"] == "ok" and r.get("usage")]
    prompt_tokens = sum(r["usage"].get("prompt_tokens", 0) for r in answered)
    completion_tokens = sum(r["usage"].get("completion_tokens", 0) for r in answered)
    batched = [r for r in answered if r.get("batch")]  # Batch API answers: billed at batch_price_factor
    batch_in = sum(r["usage"].get("prompt_tokens", 0) for r in batched)
    batch_out = sum(r["usage"].get("completion_tokens", 0) for r in batched)
    lost = sum(r.get("lost", 0) for r in rows)
    mean_in = prompt_tokens / len(answered) if answered else None
    mean_out = completion_tokens / len(answered) if answered else cfg.max_tokens
    lost_in = round(lost * mean_in) if mean_in is not None else None
    lost_out = round(lost * mean_out)
    sync_cost, batch_cost = _cost(cfg, prompt_tokens - batch_in, completion_tokens - batch_out), \
        _cost(cfg, batch_in, batch_out)
    cost = None if sync_cost is None or batch_cost is None else round(
        sync_cost + cfg.batch_price_factor * batch_cost, 4)
    ledger = {"teacher": _teacher_id(cfg), "requests_answered": len(answered), "prompt_tokens": prompt_tokens,
              "completion_tokens": completion_tokens, "cost_usd": cost,
              "lost_requests": lost, "lost_tokens_estimate": {"prompt": lost_in, "completion": lost_out,
                                                              "estimate": True},
              "lost_cost_usd_estimate": _cost(cfg, lost_in or 0, lost_out) if lost else 0.0,
              "prices_per_mtok": {"in": cfg.price_in_per_mtok, "out": cfg.price_out_per_mtok},
              "batch": {"requests_answered": len(batched), "prompt_tokens": batch_in, "completion_tokens": batch_out,
                        "price_factor": cfg.batch_price_factor,
                        "cost_usd": None if batch_cost is None else round(cfg.batch_price_factor * batch_cost, 4)}}
    if cost is None:
        ledger["note"] = PRICE_UNKNOWN
    write_json(out_dir / ("ledger.json" if name is None else f"ledger-{name}.json"), ledger)
    return {"items": len(keys), "ok": len(ok), "failed": sum(r["status"] == "failed" for r in mine),
            "refused": sum(r["status"] == "failed" and bool(r.get("refused")) for r in mine),
            "right": sum(r["verdict"] == "right" for r in ok), "wrong": sum(r["verdict"] == "wrong" for r in ok),
            "no_verdict": sum(r["verdict"] is None for r in ok), "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens, "cost_usd": cost, "lost_requests": lost,
            "errors": Counter(r.get("error", "").split(":")[0] for r in mine if r["status"] == "failed")}


def _tokenizer(model: str | None):
    """The teacher's tokenizer when it loads without the network (a local model directory, or one in
    the Hugging Face cache); None otherwise (a hosted API's model)."""
    if not model:
        return None
    try:
        from transformers import AutoTokenizer

        from critiquelab.gguf import resolve

        return AutoTokenizer.from_pretrained(resolve(model, "critique.model") or model, local_files_only=True)
    except Exception:  # noqa: BLE001  (not a local model: the estimate says it guessed)
        return None


def _prompt_tokens(todo, prompt: dict, cfg: CritiqueConfig) -> tuple[int, str]:
    """Prompt tokens of the requests to send, and how they were found: counted with the teacher's
    tokenizer (its chat template included) when it is at hand, else ~4 characters a token."""
    tok = _tokenizer(cfg.model)
    if tok is None:
        chars = sum(sum(len(m["content"]) for m in render(prompt, r)) // 4 + 8 for _, r in todo)
        return chars, f"estimate: characters / 4 (no tokenizer of {cfg.model} at hand)"
    n = 0
    for _, r in todo:
        messages = render(prompt, r)
        if tok.chat_template:
            n += len(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
        else:
            n += sum(len(tok(m["content"])["input_ids"]) + 4 for m in messages)
    return n, f"counted with the tokenizer of {cfg.model}"


def _check_context(todo, prompt: dict, cfg: CritiqueConfig) -> None:
    """Before any request: when the endpoint lists the model's context (vLLM's `max_model_len`) and
    the teacher's tokenizer is at hand, the longest prompt plus `max_tokens` must fit in it."""
    context = served_context(cfg.base_url, cfg.model, os.environ.get(cfg.api_key_env))
    tok = _tokenizer(cfg.model) if context else None
    if tok is None or not tok.chat_template:
        return
    longest, item = max((len(tok.apply_chat_template(render(prompt, r), add_generation_prompt=True, tokenize=True,
                                                     return_dict=False)), r["id"]) for _, r in todo)
    if longest + cfg.max_tokens > context:
        raise UserError(f"critique: the prompt of item {item} has {longest} tokens and critique.max_tokens is "
                        f"{cfg.max_tokens}, but {cfg.base_url} serves {cfg.model} with a context of {context} "
                        "tokens (max_model_len): shorten the inputs, lower critique.max_tokens, or serve the model "
                        "with a longer context (vLLM: --max-model-len); nothing was sent")


def _estimate(todo, prompt: dict, cfg: CritiqueConfig, done=(), task: str = "critique") -> dict:
    """Dry run: prompt tokens counted with the teacher's tokenizer when it is at hand (else ~4
    characters a token, and said so); completions bounded by items x max_tokens, and estimated from
    the answers already in the store when there are some. The exact checker uses no LLM: no tokens."""
    n = len(todo)
    if cfg.teacher == "checker":
        return {"dry_run": True, "teacher": _teacher_id(cfg), "items_to_do": n, "prompt_tokens_est": 0,
                "completion_tokens_max": 0, "cost_usd_max": 0.0,
                "note": f"the exact checker writes its {TASKS[task].what} without an LLM: no tokens, no cost"}
    prompt_tokens, counted = _prompt_tokens(todo, prompt, cfg)
    factor = cfg.batch_price_factor if cfg.api_mode == "batch" else 1.0
    cost = lambda out: None if _cost(cfg, prompt_tokens, out) is None else round(  # noqa: E731
        factor * _cost(cfg, prompt_tokens, out), 4)
    est = {"dry_run": True, "teacher": _teacher_id(cfg), "items_to_do": n, "prompt_tokens_est": prompt_tokens,
           "prompt_tokens_from": counted, "completion_tokens_max": n * cfg.max_tokens,
           "completion_tokens_max_from": f"upper bound: {n} items x critique.max_tokens={cfg.max_tokens}",
           "cost_usd_max": cost(n * cfg.max_tokens)}
    answered = [r["usage"]["completion_tokens"] for r in done
                if r.get("teacher") == _teacher_id(cfg) and r["status"] == "ok" and r.get("usage")]
    if answered:  # what this teacher actually wrote so far
        est["completion_tokens_est"] = round(n * sum(answered) / len(answered))
        est["completion_tokens_est_from"] = f"the mean of the {len(answered)} answers already in the store"
        est["cost_usd_est"] = cost(est["completion_tokens_est"])
    if est["cost_usd_max"] is None:
        est["cost"] = PRICE_UNKNOWN
    return est


def describe_estimate(est: dict) -> str:
    """The dry run in words: one clause per teacher (a panel's teachers one by one)."""
    if "teachers" in est:
        return "; ".join(f"{name}: {describe_estimate(e)}" for name, e in est["teachers"].items())
    if "note" in est:
        return f"{est['items_to_do']:,} items, {est['note']}"
    usd = lambda x: "cost unknown (set critique.price_in_per_mtok and critique.price_out_per_mtok)" \
        if x is None else f"${x:,.4f}"  # noqa: E731
    text = (f"{est['items_to_do']:,} items; prompt tokens {est['prompt_tokens_est']:,} ({est['prompt_tokens_from']}); "
            f"completion tokens at most {est['completion_tokens_max']:,} ({est['completion_tokens_max_from']}); "
            f"cost at most {usd(est['cost_usd_max'])}")
    if "completion_tokens_est" in est:
        text += (f"; expected completion tokens {est['completion_tokens_est']:,} "
                 f"({est['completion_tokens_est_from']}), cost {usd(est['cost_usd_est'])}")
    return text


def summary_line(s: dict, out: str | Path) -> str:
    """`critique`'s and `refine`'s one-line summary of `run_critique`'s result (or of an
    `Incomplete`'s): verdicts (of critiques), failures, tokens and cost; for a dry run, the estimate."""
    if s.get("dry_run"):
        return f"dry run (nothing sent): {describe_estimate(s)}"
    cost = "cost unknown (set critique.price_in_per_mtok and critique.price_out_per_mtok)" \
        if s["cost_usd"] is None else f"${s['cost_usd']}"
    lost = f", {s['lost_requests']} answers lost in transit (estimated in ledger.json)" if s.get("lost_requests") else ""
    task = TASKS[s.get("task", "critique")]
    verdicts = f" ({s['right']} right, {s['wrong']} wrong, {s['no_verdict']} without verdict)" \
        if task.writes == "critique" else ""
    return (f"{task.what} in {out}/{task.store}: {s['ok']}/{s['items']} ok{verdicts}, {s['failed']} failed; tokens "
            f"{s['prompt_tokens']}+{s['completion_tokens']}, {cost}{lost}")


# ---------------------------------------------------------------------------------------------
# The OpenAI-compatible teacher


class _Limiter:
    """Requests-per-minute and tokens-per-minute over a sliding 60 s window."""

    def __init__(self, rpm: float | None, tpm: float | None):
        self.rpm, self.tpm, self.events = rpm, tpm, []
        self.lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        if not self.rpm and not self.tpm:
            return
        async with self.lock:
            while True:
                now = time.monotonic()
                self.events = [(t, n) for t, n in self.events if now - t < 60]
                ok_r = not self.rpm or len(self.events) < self.rpm
                ok_t = not self.tpm or sum(n for _, n in self.events) + tokens <= self.tpm or not self.events
                if ok_r and ok_t:
                    self.events.append((now, tokens))
                    return
                await asyncio.sleep(max(0.01, 60 - (now - self.events[0][0])))


def _maybe_billed(e: BaseException) -> bool:
    """Did the endpoint perhaps do (and bill) the work whose answer we lost? Yes for a timeout, a
    connection cut after the request went out, or a 200 whose body was unusable; no for a refused
    connection or an error status."""
    import openai


    if isinstance(e, (openai.APITimeoutError, json.JSONDecodeError, BadResponse)):
        return True
    if isinstance(e, openai.APIConnectionError):
        return "connect" not in type(e.__cause__).__name__.lower()
    return False


def _response(task: str, text: str) -> dict:
    """The fields of a record holding the teacher's text: a critique and its verdict, or a solution."""
    writes = TASKS[task].writes
    return {writes: text, "verdict": parse_verdict(text) if writes == "critique" else None}


async def _api_run(todo, prompt: dict, cfg: CritiqueConfig, store: Store, base, kind: str) -> None:
    from critiquelab.io import refusal

    check_endpoint(cfg.base_url, "critique.base_url")
    _check_context(todo, prompt, cfg)
    client = openai_client(cfg.base_url, cfg.api_key_env, cfg.timeout)
    gate, limiter = asyncio.Semaphore(cfg.concurrency), _Limiter(cfg.requests_per_minute, cfg.tokens_per_minute)
    fatal: list[tuple[str, str, int]] = []  # (item id, the refusal, its status): stops the run
    answered = [0]

    async def one(k: str, row: dict, progress, task) -> None:
        messages = render(prompt, row)
        attempts, lost = 0, 0
        try:
            async with gate:
                if fatal:
                    return
                async for attempt in retrying(cfg.max_attempts):
                    with attempt:
                        attempts += 1
                        await limiter.acquire(sum(len(m["content"]) for m in messages) // 4 + cfg.max_tokens)
                        try:
                            resp = await chat(client, model=cfg.model, messages=messages,
                                              temperature=cfg.temperature, top_p=cfg.top_p,
                                              max_tokens=cfg.max_tokens, seed=cfg.seed)
                        except Exception as e:
                            lost += _maybe_billed(e)
                            raise
            answered[0] += 1
            text = resp.choices[0].message.content or ""  # an empty critique is kept; it has no verdict
            usage = resp.usage.model_dump() if resp.usage else None
            rec = {**base(k, row), "status": "ok", **_response(kind, text),
                   "usage": usage and {"prompt_tokens": usage.get("prompt_tokens") or 0,
                                       "completion_tokens": usage.get("completion_tokens") or 0},
                   "attempts": attempts, "lost": lost}
        except Exception as e:  # permanent for this run: recorded, retried on the next run
            why = refusal(e)  # a 4xx a rerun cannot fix: 'HTTP 400: <the server's message>'
            if why and (e.status_code in (401, 403, 404) or not answered[0]):
                fatal.append((row["id"], why, e.status_code))  # the key, the model or the settings: stop now
                return
            rec = {**base(k, row), "status": "failed", "verdict": None, "usage": None, "attempts": attempts,
                   "lost": lost, "error": why or f"{type(e).__name__}: {str(e)[:300]}", **({"refused": True} if why else {})}
        write(rec)
        progress.advance(task)

    t0 = time.monotonic()
    try:
        with store.writer() as write, progress_bar(kind, "rate", elapsed=True) as progress:
            task = progress.add_task(kind, total=len(todo), rate="")

            async def tick():
                while True:
                    await asyncio.sleep(1)
                    done = progress.tasks[0].completed
                    progress.update(task, rate=f"{done / max(time.monotonic() - t0, 1e-9):.1f}/s")

            ticker = asyncio.create_task(tick())
            await asyncio.gather(*(one(k, r, progress, task) for k, r in todo))
            ticker.cancel()
    finally:
        await client.close()
    if fatal:
        item, why, status = fatal[0]
        hint = refused_hint(status, cfg.base_url, "critique.model", cfg.api_key_env, os.environ.get(cfg.api_key_env),
                            why, "critique.max_tokens")
        raise UserError(f"critique: the endpoint refused the request for item {item} ({why}); {hint}. A rerun would "
                        "be refused the same way; finished items are kept.")
