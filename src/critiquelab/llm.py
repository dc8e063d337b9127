"""Generation backends behind one Protocol. For now: Hugging Face transformers.

`HFBackend.generate(conversations, settings)` renders each conversation with the tokenizer's
chat template, sorts by length, generates in left-padded batches with the KV cache, cuts the
text at stop strings and returns completions in the input order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from critiquelab.io import UserError, append_jsonl, read_jsonl

__all__ = ["Sampling", "Backend", "HFBackend"]


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
                 on_batch=None) -> list[str]: ...


def _cut_at_stop(text: str, stops: list[str]) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i >= 0:
            cut = min(cut, i + len(s))
    return text[:cut]


class HFBackend:
    """Batched generation with a local (or hub-cached) transformers causal LM."""

    def __init__(self, model_dir: str | Path, batch_size: int = 64, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: not a model directory (no config.json)")
        self.name = f"hf:{path}"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.batch_size = batch_size
        self.truncated = 0  # prompts cut to fit the context window

    def generate(self, conversations: list[list[dict]], sampling: Sampling, on_batch=None) -> list[str]:
        import torch

        prompts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                   for c in conversations]
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        # A prompt that cannot fit beside max_new_tokens keeps its end (where the question and the
        # generation prompt are); the count is kept for the results.
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit:
            keep = max(1, limit - sampling.max_new_tokens)
            self.truncated += sum(len(e) > keep for e in encoded)
            encoded = [e[-keep:] for e in encoded]
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        out: list[str | None] = [None] * len(prompts)
        greedy = sampling.temperature <= 0
        gen = torch.Generator(device=self.device).manual_seed(sampling.seed)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            kwargs = {"do_sample": False} if greedy else {
                "do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p}
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            with torch.inference_mode():
                seqs = self.model.generate(
                    **batch, max_new_tokens=sampling.max_new_tokens, use_cache=True,
                    pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
                    **kwargs)
            texts = self.tokenizer.batch_decode(seqs[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            for i, t in zip(idx, texts, strict=True):
                out[i] = _cut_at_stop(t, sampling.stop)
            if on_batch:
                on_batch(len(idx))
        return out  # type: ignore[return-value]


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint (a served model, vLLM, a hosted API).

    Requests run concurrently (at most `concurrency` in flight) through the official async
    client, which retries 429 / 5xx / timeouts itself (`max_retries`). The API key is read from
    the environment variable named by `api_key_env` and is never written anywhere.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 16, timeout: float = 120.0, max_retries: int = 5):
        import os

        self.name = f"openai:{model}@{base_url}"
        self.base_url, self.model = base_url, model
        self.api_key = os.environ.get(api_key_env) or "EMPTY"  # local servers accept any key
        self.concurrency, self.timeout, self.max_retries = concurrency, timeout, max_retries

    def generate(self, conversations: list[list[dict]], sampling: Sampling, on_batch=None) -> list[str]:
        import asyncio

        return asyncio.run(self._generate(conversations, sampling, on_batch))

    async def _generate(self, conversations, sampling: Sampling, on_batch) -> list[str]:
        import asyncio

        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout,
                             max_retries=self.max_retries)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(messages: list[dict]) -> str:
            async with gate:
                resp = await client.chat.completions.create(
                    model=self.model, messages=messages, max_tokens=sampling.max_new_tokens,
                    temperature=sampling.temperature, top_p=sampling.top_p, seed=sampling.seed,
                    stop=sampling.stop or None)
            if on_batch:
                on_batch(1)
            if not resp.choices:
                raise RuntimeError(f"{self.base_url}: response without choices")
            return _cut_at_stop(resp.choices[0].message.content or "", sampling.stop)

        try:
            return list(await asyncio.gather(*(one(c) for c in conversations)))
        finally:
            await client.close()


class VLLMBackend:
    """vLLM offline engine (GPU machines; `pip install vllm`), tensor-parallel over all GPUs."""

    def __init__(self, model_dir: str | Path, tensor_parallel_size: int | None = None):
        try:
            from vllm import LLM
        except ImportError:
            raise UserError("backend=vllm needs vLLM installed (pip install vllm; GPU machines)") from None
        import torch

        self.name = f"vllm:{model_dir}"
        tp = tensor_parallel_size or max(1, torch.cuda.device_count())
        self.llm = LLM(model=str(model_dir), tensor_parallel_size=tp)

    def generate(self, conversations: list[list[dict]], sampling: Sampling, on_batch=None) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                                top_p=sampling.top_p, seed=sampling.seed, stop=sampling.stop or None,
                                include_stop_str_in_output=True)
        outputs = self.llm.chat(conversations, params, use_tqdm=False)
        if on_batch:
            on_batch(len(conversations))
        return [o.outputs[0].text for o in outputs]


def generate_resumable(path: Path, rows: list[dict], backend, conversation, record, sampling: Sampling,
                       chunk: int, on_batch=None) -> list[dict]:
    """Generate for the rows (by `id`) not yet recorded in the JSONL `path`, appending
    `record(row, text)` chunk by chunk so that an interrupted run resumes (a torn last line is
    ignored); return every row's record, in order. `backend` is a zero-argument factory, called only
    when there is work; `on_batch(n)` hears about generated rows and, first, the ones already done."""
    done = {r["id"]: r for r in read_jsonl(path, tolerate_torn_tail=True)} if path.exists() else {}
    todo = [r for r in rows if r["id"] not in done]
    if on_batch:
        on_batch(len(rows) - len(todo))
    if todo:
        model = backend()
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            texts = model.generate([conversation(r) for r in part], sampling, on_batch=on_batch)
            records = [record(r, t) for r, t in zip(part, texts, strict=True)]
            append_jsonl(path, records)
            done.update((r["id"], rec) for r, rec in zip(part, records, strict=True))
    return [done[r["id"]] for r in rows]
