"""Critiques of candidate solutions by a teacher, into an append-only store that loses nothing.

Teachers: `checker` (the synthetic world's exact step checker; offline and exact; with
`checker_noise: p` a weak teacher that gets the verdict wrong on a share p of items), `openai` (any
OpenAI-compatible endpoint through the official async client) and `hf` / `vllm` (a local model).

Input: `solutions.jsonl` from `sample`. Output directory:
- `critiques.jsonl`: the store, one line per attempt outcome: `key`, `id`, `problem_id`, `status`
  (ok / failed), `critique`, `verdict` (right / wrong / None), `teacher`, `usage`, `error`.
  The key hashes (item id, prompt, teacher, sampling settings); a rerun skips keys already `ok`,
  retries `failed` ones, and readers take the latest record per key, so a crash or `kill -9`
  loses nothing and duplicates nothing.
- `ledger.json`: tokens and cost (prices per model from the config), recomputed from the store.

API keys are read from the environment variable named in the config and never written.

    critiquelab critique --input runs/x/solutions.jsonl --out runs/x/critique critique.teacher=openai \\
        critique.base_url=https://api.openai.com/v1 critique.model=gpt-4o-2024-11-20 --dry-run
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import time
from importlib import resources
from pathlib import Path

import yaml

from critiquelab.config import CritiqueConfig
from critiquelab.io import UserError, append_jsonl, read_jsonl, stable_hash, write_json
from critiquelab.world import CheckResult, check, mistaken_critique, noisy_solution

__all__ = ["parse_verdict", "load_prompt", "render", "shard_filter", "read_store", "latest_ok",
           "run_critique"]

log = logging.getLogger(__name__)

_VERDICT = re.compile(r"Conclusion:\s*\**\s*(right|wrong|correct|incorrect)\b", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """'right' / 'wrong' from the last `Conclusion: ...`; None when there is none (never guessed)."""
    found = _VERDICT.findall(text or "")
    if not found:
        return None
    v = found[-1].lower()
    return "right" if v in ("right", "correct") else "wrong"


def load_prompt(name: str) -> dict:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        try:
            text = resources.files("critiquelab").joinpath("prompts", f"{name}.yaml").read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"critique.prompt={name!r}: no such template (a name in critiquelab/prompts or a .yaml path)") from None
    prompt = yaml.safe_load(text)
    if not isinstance(prompt, dict) or "user" not in prompt:
        raise UserError(f"critique prompt {name!r}: needs a 'user' template (and optionally 'system')")
    return prompt


def render(prompt: dict, row: dict) -> list[dict]:
    messages = [{"role": "system", "content": prompt["system"]}] if prompt.get("system") else []
    return messages + [{"role": "user", "content": prompt["user"].format(question=row["question"],
                                                                          solution=row["solution"])}]


def shard_filter(rows: list[dict], shard: str | None) -> list[dict]:
    """Keep the rows of shard `i/n` (by a stable hash of the id), so n machines split one job."""
    if not shard:
        return rows
    m = re.fullmatch(r"(\d+)/(\d+)", shard)
    if not m or not 0 <= int(m[1]) < int(m[2]):
        raise UserError(f"--shard {shard!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    i, n = int(m[1]), int(m[2])
    return [r for r in rows if int(stable_hash(r["id"]), 16) % n == i]


def read_store(path: str | Path) -> dict[str, dict]:
    """Latest record per key (a torn last line from a killed run is ignored)."""
    path = Path(path)
    if not path.exists():
        return {}
    latest: dict[str, dict] = {}
    for r in read_jsonl(path, tolerate_torn_tail=True):
        latest[r["key"]] = r
    return latest


def latest_ok(path: str | Path) -> dict[str, dict]:
    """item id -> its latest successful critique."""
    return {r["id"]: r for r in read_store(path).values() if r["status"] == "ok"}


def _teacher_id(cfg: CritiqueConfig) -> str:
    if cfg.teacher == "checker":
        return f"checker(noise={cfg.checker_noise},seed={cfg.seed})" if cfg.checker_noise else "checker"
    return f"{cfg.teacher}:{cfg.model}"


def _sampling(cfg: CritiqueConfig) -> dict:
    return {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens, "seed": cfg.seed}


def _validate(rows: list[dict], path, task: str) -> list[dict]:
    """Rows without id or question are errors; an empty solution (a model that wrote nothing) is
    skipped with a count, not sent to the teacher to critique (a teacher that solves needs none)."""
    for i, r in enumerate(rows, start=1):
        missing = [k for k in ("id", "question") if not r.get(k)] + (["solution"] if "solution" not in r else [])
        if missing:
            raise UserError(f"{path}:{i}: missing field(s) {', '.join(missing)}")
    kept = [r for r in rows if str(r["solution"]).strip() or task == "solve"]
    if len(kept) < len(rows):
        log.warning("critique: %d empty solutions skipped", len(rows) - len(kept))
    return kept


def run_critique(solutions_path: str | Path, out_dir: str | Path, cfg: CritiqueConfig, *,
                 shard: str | None = None, dry_run: bool = False) -> dict:
    prompt = load_prompt(cfg.prompt)
    task = prompt.get("task", "critique")
    if task not in ("critique", "solve"):
        raise UserError(f"critique prompt {cfg.prompt!r}: task {task!r} (use critique or solve)")
    rows = shard_filter(_validate(read_jsonl(solutions_path), solutions_path, task), shard)
    out_dir = Path(out_dir)
    store_path = out_dir / ("critiques.jsonl" if task == "critique" else "solutions.jsonl")
    if cfg.teacher == "checker":  # the checker reads no prompt, only its task
        prompt = {"user": f"exact step checker: {task}"}
    fixed = {"prompt": stable_hash(prompt), "teacher": _teacher_id(cfg),
             "sampling": _sampling(cfg) if cfg.teacher != "checker" else None}
    keyed = [(stable_hash({**fixed, "id": r["id"]}, 16), r) for r in rows]
    store = read_store(store_path)
    todo = [(k, r) for k, r in keyed if store.get(k, {}).get("status") != "ok"]
    log.info("critique: %d items, %d already done, %d to do", len(keyed), len(keyed) - len(todo), len(todo))
    if dry_run:
        return _estimate(todo, prompt, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = lambda k, r: {"key": k, "id": r["id"], "problem_id": r.get("problem_id"),  # noqa: E731
                         "teacher": fixed["teacher"]}
    if cfg.teacher == "checker":
        recs = []
        for k, r in todo:
            if "steps" not in r or "start" not in r:
                raise UserError(f"{solutions_path}: item {r['id']}: the checker teacher needs world problems "
                                "('start', 'steps')")
            rng = random.Random(stable_hash({"seed": cfg.seed, "id": r["id"]}))
            if task == "solve":  # the reference steps; a weak checker slips on a share of them
                wrong = rng.random() < cfg.checker_noise
                text = noisy_solution(r, rng)[0] if wrong else r["reference_solution"]
                recs.append({**base(k, r), "status": "ok", "solution": text, "verdict": None, "usage": None})
                continue
            res = check(r, r["solution"])
            if rng.random() < cfg.checker_noise:  # a deliberately weak teacher: the verdict is wrong
                res = CheckResult(not res.correct, mistaken_critique(r, r["solution"], rng))
            recs.append({**base(k, r), "status": "ok", "critique": res.critique,
                         "verdict": parse_verdict(res.critique), "error_step": res.error_step,
                         "error_kind": res.error_kind, "usage": None})
        append_jsonl(store_path, recs)
    elif cfg.teacher in ("hf", "vllm"):
        from critiquelab.llm import HFBackend, Sampling, VLLMBackend

        if not cfg.model:
            raise UserError(f"critique.teacher={cfg.teacher} needs critique.model (a model directory)")
        backend = HFBackend(cfg.model) if cfg.teacher == "hf" else VLLMBackend(cfg.model)
        sampling = Sampling(max_new_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                            seed=cfg.seed)
        for s in range(0, len(todo), 256):  # append as it goes, so an interruption keeps finished work
            part = todo[s:s + 256]
            texts = backend.generate([render(prompt, r) for _, r in part], sampling)
            append_jsonl(store_path, [{**base(k, r), "status": "ok", **_response(task, t), "usage": None}
                                      for (k, r), t in zip(part, texts, strict=True)])
    elif cfg.teacher == "openai":
        asyncio.run(_api_run(todo, prompt, cfg, store_path, base, task))
    else:
        raise UserError(f"critique.teacher={cfg.teacher!r}: use checker, openai, hf or vllm")
    return _summarize(store_path, [k for k, _ in keyed], cfg, out_dir)


def _cost(cfg: CritiqueConfig, prompt_tokens: int, completion_tokens: int) -> float:
    return prompt_tokens / 1e6 * cfg.price_in_per_mtok + completion_tokens / 1e6 * cfg.price_out_per_mtok


def _summarize(store_path: Path, keys: list[str], cfg: CritiqueConfig, out_dir: Path) -> dict:
    store = read_store(store_path)
    mine = [store[k] for k in keys if k in store]
    ok = [r for r in mine if r["status"] == "ok"]
    prompt_tokens = sum((r.get("usage") or {}).get("prompt_tokens", 0) for r in store.values())
    completion_tokens = sum((r.get("usage") or {}).get("completion_tokens", 0) for r in store.values())
    ledger = {"requests": sum(1 for r in store.values() if r.get("usage")), "prompt_tokens": prompt_tokens,
              "completion_tokens": completion_tokens,
              "cost_usd": round(_cost(cfg, prompt_tokens, completion_tokens), 4),
              "prices_per_mtok": {"in": cfg.price_in_per_mtok, "out": cfg.price_out_per_mtok}}
    write_json(out_dir / "ledger.json", ledger)
    return {"items": len(keys), "ok": len(ok), "failed": sum(r["status"] == "failed" for r in mine),
            "right": sum(r["verdict"] == "right" for r in ok), "wrong": sum(r["verdict"] == "wrong" for r in ok),
            "no_verdict": sum(r["verdict"] is None for r in ok), **{k: ledger[k] for k in ("prompt_tokens",
                                                                                            "completion_tokens", "cost_usd")}}


def _estimate(todo, prompt: dict, cfg: CritiqueConfig) -> dict:
    """Dry run: ~4 characters per token for prompts; completions bounded by max_tokens."""
    prompt_tokens = sum(sum(len(m["content"]) for m in render(prompt, r)) // 4 + 8 for _, r in todo)
    completion_max = len(todo) * cfg.max_tokens
    cost = lambda out: round(_cost(cfg, prompt_tokens, out), 2)  # noqa: E731
    return {"dry_run": True, "items_to_do": len(todo), "prompt_tokens_est": prompt_tokens,
            "completion_tokens_max": completion_max, "completion_tokens_typical": len(todo) * 400,
            "cost_usd_max": cost(completion_max), "cost_usd_typical": cost(len(todo) * 400)}


# ---------------------------------------------------------------------------------------------
# The OpenAI-compatible teacher


class _EmptyResponse(Exception):
    pass


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


def _transient(e: BaseException) -> bool:
    import openai

    if isinstance(e, (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError,
                      json.JSONDecodeError, _EmptyResponse)):
        return True
    return isinstance(e, openai.APIStatusError) and e.status_code >= 500


def _wait(state) -> float:
    """Retry-After when the server sends one (429), else exponential backoff with jitter."""
    import random

    e = state.outcome.exception()
    response = getattr(e, "response", None)
    after = response.headers.get("retry-after") if response is not None else None
    if after:
        try:
            return min(float(after), 120.0)
        except ValueError:
            pass
    return min(60.0, 0.5 * 2 ** (state.attempt_number - 1)) * (0.5 + random.random())


def _response(task: str, text: str) -> dict:
    """The fields of a record holding the teacher's text: a critique and its verdict, or a solution."""
    return {"critique": text, "verdict": parse_verdict(text)} if task == "critique" else \
        {"solution": text, "verdict": None}


async def _api_run(todo, prompt: dict, cfg: CritiqueConfig, store_path: Path, base, kind: str) -> None:
    import openai
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

    if not cfg.base_url or not cfg.model:
        raise UserError("critique.teacher=openai needs critique.base_url and critique.model")
    key = os.environ.get(cfg.api_key_env)
    if not key and "127.0.0.1" not in cfg.base_url and "localhost" not in cfg.base_url:
        raise UserError(f"critique: set the API key in the environment variable {cfg.api_key_env}")
    client = openai.AsyncOpenAI(base_url=cfg.base_url, api_key=key or "EMPTY", timeout=cfg.timeout, max_retries=0)
    gate, limiter = asyncio.Semaphore(cfg.concurrency), _Limiter(cfg.requests_per_minute, cfg.tokens_per_minute)
    fatal: list[BaseException] = []

    async def request(messages):
        resp = await client.chat.completions.create(
            model=cfg.model, messages=messages, temperature=cfg.temperature, top_p=cfg.top_p,
            max_tokens=cfg.max_tokens, seed=cfg.seed)
        if not resp.choices or resp.choices[0].message is None:
            raise _EmptyResponse("response without choices")
        return resp

    async def one(k: str, row: dict, progress, task) -> None:
        messages = render(prompt, row)
        attempts = 0
        try:
            async with gate:
                if fatal:
                    return
                async for attempt in AsyncRetrying(stop=stop_after_attempt(cfg.max_attempts), wait=_wait,
                                                   retry=retry_if_exception(_transient), reraise=True):
                    with attempt:
                        attempts += 1
                        await limiter.acquire(sum(len(m["content"]) for m in messages) // 4 + cfg.max_tokens)
                        resp = await request(messages)
            text = resp.choices[0].message.content or ""  # an empty critique is kept; it has no verdict
            usage = resp.usage.model_dump() if resp.usage else None
            rec = {**base(k, row), "status": "ok", **_response(kind, text),
                   "usage": usage and {"prompt_tokens": usage.get("prompt_tokens", 0),
                                       "completion_tokens": usage.get("completion_tokens", 0)},
                   "attempts": attempts}
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as e:
            fatal.append(e)
            return
        except Exception as e:  # permanent for this run: recorded, retried on the next run
            rec = {**base(k, row), "status": "failed", "verdict": None, "usage": None,
                   "attempts": attempts, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        store.write(json.dumps(rec, ensure_ascii=False) + "\n")
        store.flush()  # in the OS after every item: a killed process loses nothing
        written[0] += 1
        if written[0] % 64 == 0:
            os.fsync(store.fileno())  # and on disk regularly, not per item (fsync costs ms)
        progress.advance(task)

    columns = [TextColumn("[bold]critique"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    t0 = time.monotonic()
    written = [0]
    store_path.parent.mkdir(parents=True, exist_ok=True)
    store = open(store_path, "a", encoding="utf-8")
    try:
        with Progress(*columns) as progress:
            task = progress.add_task("critique", total=len(todo), rate="")

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
        store.flush()
        os.fsync(store.fileno())
        store.close()
    if fatal:
        e = fatal[0]
        hint = f"check {cfg.api_key_env}" if not isinstance(e, openai.NotFoundError) else "check critique.model"
        raise UserError(f"critique: the endpoint refused the request ({type(e).__name__}, "
                        f"status {getattr(e, 'status_code', '?')}); {hint}. Finished items are kept.")
