"""The OpenAI Batch API as the teacher (`critique.api_mode=batch`): half the synchronous price for
the 50K-600K critiques the paper used, answered within 24 hours, resumable at every step.

    write the request file -> upload it -> create the batch -> poll -> download -> merge into the store

`<out>/batches.json` records each batch of the critique directory: its request file, the keys of
its items, the uploaded file's id, the batch's id and status, and whether its results were merged.
Each step is recorded before the next one starts, so a run stopped anywhere (kill -9 included)
resumes at that step: a file is uploaded once, a batch created once, results merged once (the
store is keyed as well, so a merge repeated after a kill adds nothing). Items a batch could not
answer (errors, expiry) are recorded as failed and go into a new batch on the next run.

Records of batch answers carry `batch` (its id): the ledger prices them at
`critique.batch_price_factor` (OpenAI: 0.5) of the synchronous price.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from critiquelab.config import CritiqueConfig
from critiquelab.io import (
    REFUSED_STATUS,
    Incomplete,
    Store,
    UserError,
    atomic_write,
    read_json,
    refusal,
    refused_hint,
    write_json,
)
from critiquelab.llm import check_endpoint, openai_client, retrying
from critiquelab.logs import progress_bar

__all__ = ["run_batches"]

log = logging.getLogger(__name__)

TERMINAL = ("completed", "failed", "expired", "cancelled")


def _call(fn, *args, **kwargs):
    """One Batch API call under the shared retry policy, at most 6 attempts."""
    return retrying(6, sync=True)(fn, *args, **kwargs)


def _requests(todo, render, cfg: CritiqueConfig) -> list[dict]:
    return [{"custom_id": k, "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": cfg.model, "messages": render(r), "temperature": cfg.temperature, "top_p": cfg.top_p,
                      "max_tokens": cfg.max_tokens, "seed": cfg.seed}} for k, r in todo]


def run_batches(todo, render, cfg: CritiqueConfig, store: Store, base, record, out: Path) -> None:
    """Critique `todo` ([(key, row)]) through batches. `render(row)`: the messages; `base(key, row)`:
    a record's common fields; `record(key, row, text, usage)`: an answer's record. Raises Incomplete
    while batches are still running and `critique.batch_wait` is off."""
    import openai

    check_endpoint(cfg.base_url, "critique.base_url")
    client = openai_client(cfg.base_url, cfg.api_key_env, cfg.timeout, sync=True)
    path = out / "batches.json"
    state = read_json(path) if path.is_file() else {"batches": []}
    save = lambda: write_json(path, state)  # noqa: E731
    rows = dict(todo)
    open_keys = {k for b in state["batches"] if not b.get("merged") for k in b["keys"]}
    new = [(k, r) for k, r in todo if k not in open_keys]
    for start in range(0, len(new), cfg.batch_max_requests):  # 1. the request files
        part = new[start:start + cfg.batch_max_requests]
        name = f"batch-{len(state['batches'])}.requests.jsonl"
        with atomic_write(out / name) as f:
            for req in _requests(part, render, cfg):
                f.write(json.dumps(req, ensure_ascii=False) + "\n")
        state["batches"].append({"requests": name, "keys": [k for k, _ in part]})
        save()
    try:
        for b in state["batches"]:
            if b.get("merged"):
                continue
            if "file_id" not in b:  # 2. upload (the bytes, so that a retry sends them again)
                b["file_id"] = _call(client.files.create, file=(b["requests"], (out / b["requests"]).read_bytes()),
                                     purpose="batch").id
                save()
            if "batch_id" not in b:  # 3. create
                b["batch_id"] = _call(client.batches.create, input_file_id=b["file_id"],
                                      endpoint="/v1/chat/completions", completion_window="24h").id
                b["status"] = "created"
                save()
                log.info("batch %s: %d requests submitted", b["batch_id"], len(b["keys"]))
        _poll(client, state, save, store, rows, base, record, cfg)
    except openai.APIError as e:
        if why := refusal(e):  # 400/401/403/404/422: a rerun would be refused the same way
            hint = refused_hint(e.status_code, cfg.base_url, "critique.model", cfg.api_key_env,
                                os.environ.get(cfg.api_key_env), why, "critique.max_tokens")
            raise UserError(f"critique: the batch endpoint refused the request ({why}); {hint}. A rerun would be "
                            f"refused the same way; every step done so far is recorded in {path}") from None
        raise Incomplete(f"critique: the Batch API failed ({type(e).__name__}: {str(e)[:200]}); every step done "
                         f"so far is recorded in {path}: rerun to go on from there") from None


def _poll(client, state: dict, save, store: Store, rows: dict, base, record, cfg: CritiqueConfig) -> None:
    """4-6. Poll the open batches; download and merge each one that ended."""
    open_ = [b for b in state["batches"] if not b.get("merged")]
    with progress_bar("batches", "note", elapsed=True, remaining=False) as progress:
        task = progress.add_task("batches", total=sum(len(b["keys"]) for b in open_), note="")
        while open_:
            for b in list(open_):
                info = _call(client.batches.retrieve, b["batch_id"])
                b["status"] = info.status
                if info.status not in TERMINAL:
                    continue
                _merge(client, b, info, store, rows, base, record)
                b["merged"] = True
                save()
                open_.remove(b)
                progress.advance(task, len(b["keys"]))
            save()
            if not open_:
                break
            if not cfg.batch_wait:
                raise Incomplete(f"{len(open_)} batch(es) still running ({', '.join(b['batch_id'] for b in open_)}); "
                                 "rerun the same command to collect them")
            progress.update(task, note=", ".join(f"{b['batch_id']}: {b['status']}" for b in open_))
            time.sleep(cfg.batch_poll_seconds)


def _merge(client, b: dict, info, store: Store, rows: dict, base, record) -> None:
    """Append the batch's answers (ok) and its errors and unanswered items (failed) to the store."""
    done = store.read()
    answers: dict[str, dict] = {}
    for file_id in (info.output_file_id, info.error_file_id):
        if file_id:
            for line in _call(client.files.content, file_id).text.splitlines():
                if line.strip():
                    item = json.loads(line)
                    answers[item["custom_id"]] = item
    records = []
    for k in b["keys"]:
        if k not in rows or done.get(k, {}).get("status") == "ok":
            continue  # done meanwhile (or merged before a kill)
        item = answers.get(k)
        response = (item or {}).get("response") or {}
        body = response.get("body") or {}
        choices = body.get("choices") or []
        if item and response.get("status_code") == 200 and choices:
            usage = body.get("usage") or {}
            records.append({**record(k, rows[k], choices[0]["message"].get("content") or "",
                                     {"prompt_tokens": usage.get("prompt_tokens") or 0,
                                      "completion_tokens": usage.get("completion_tokens") or 0}),
                            "batch": b["batch_id"]})
            continue
        why = (item or {}).get("error") or body.get("error") or (
            f"not answered: the batch ended {info.status}" if not item else f"status {response.get('status_code')}")
        refused = response.get("status_code") in REFUSED_STATUS  # the same request would be refused again
        message = why.get("message", why) if isinstance(why, dict) else why
        error = f"HTTP {response['status_code']}: {message}" if refused else f"batch: {json.dumps(why)}"
        records.append({**base(k, rows[k]), "status": "failed", "verdict": None, "usage": None,
                        "batch": b["batch_id"], "error": error[:300], **({"refused": True} if refused else {})})
    store.append(records)
    log.info("batch %s (%s): %d answers, %d failed", b["batch_id"], info.status,
             sum(r["status"] == "ok" for r in records), sum(r["status"] == "failed" for r in records))
