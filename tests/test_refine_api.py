"""The refine task with an API teacher: a real OpenAI-compatible server (`transformers serve`) behind a
fault proxy, and kill -9 in the middle of a run (the critique stage's own guarantees, test_critique_api.py)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import checker_critiqued, kill_at_random_moments
from critiquelab.config import CritiqueConfig
from critiquelab.critique import read_store, run_critique
from critiquelab.io import read_jsonl
from tests.servers import FaultProxy, transformers_serve


@pytest.fixture(scope="module")
def long_model(tiny_model, tmp_path_factory):
    """The tiny model with a 4096-token context: a refine prompt (question, solution and critique) of the
    tiny world's character-level vocabulary runs to 500-800 tokens, beyond the 512 it was built with,
    and transformers serve (5.25 on) refuses a prompt beyond the context. (RoPE positions past those
    it was trained on are fine for a test of the request path.)"""
    d = tmp_path_factory.mktemp("long") / "model"
    shutil.copytree(tiny_model, d)
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 4096}))
    return d


@pytest.fixture(scope="module")
def server(long_model, tmp_path_factory):
    with transformers_serve(long_model, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url


@pytest.fixture()
def critiqued(tmp_path, tiny_world):
    """Injected-error solutions of 16 world problems (about half right) and the exact checker's critiques."""
    return checker_critiqued(tiny_world, tmp_path, 16)


def refiner(url, model, **kw) -> CritiqueConfig:
    settings = dict(teacher="openai", base_url=url + "/v1", model=str(model), prompt="refine_paper", max_tokens=16,
                    timeout=60, concurrency=4, max_attempts=6, price_in_per_mtok=2.5, price_out_per_mtok=10.0)
    return CritiqueConfig(**{**settings, **kw})


def test_refine_from_a_real_server_survives_429_and_5xx(server, long_model, critiqued, tmp_path):
    sols, crits = critiqued
    # the inputs fit the served context, whatever the machine: the prompts are counted, not assumed
    from critiquelab.critique import load_prompt, read_items, render
    from critiquelab.llm import load_tokenizer

    tok, prompt = load_tokenizer(long_model), load_prompt("refine_paper")
    lengths = [len(tok.apply_chat_template(render(prompt, r), add_generation_prompt=True, tokenize=True,
                                           return_dict=False)) for r in read_items(sols, "refine", crits)]
    assert max(lengths) + 16 <= 4096, max(lengths)
    faults = ["429", "500", "429", "500"]
    plan = lambda i: faults[i // 2] if i < 2 * len(faults) and i % 2 == 0 else None  # noqa: E731
    with FaultProxy(server, plan) as proxy:
        s = run_critique(sols, tmp_path / "r", refiner(proxy.url, long_model), critiques=crits)
    assert sorted(proxy.faults) == sorted(faults)  # every injected fault was met, and retried
    assert s["ok"] == s["items"] == 16 and s["failed"] == 0 and s["task"] == "refine"
    store = read_jsonl(tmp_path / "r" / "refined.jsonl")
    assert sorted(r["id"] for r in store if r["status"] == "ok") == sorted(r["id"] for r in read_jsonl(sols))
    assert all("solution" in r and "critique" not in r for r in store)
    critiques = {c["critique"] for c in read_store(crits).values()}
    sent = [json.loads(b)["messages"][-1]["content"] for b in proxy.bodies]
    assert len(sent) == 16 + len(faults) and all(any(c in m for c in critiques) for m in sent)
    ledger = json.loads((tmp_path / "r" / "ledger.json").read_text())
    assert ledger["requests_answered"] == 16 and ledger["prompt_tokens"] > 0 and ledger["cost_usd"] > 0


def test_refine_killed_mid_run_then_rerun_loses_and_duplicates_nothing(tiny_model, critiqued, tmp_path):
    sols, crits = critiqued
    out = tmp_path / "r"
    with FaultProxy(None, latency_s=0.3, reply=lambda req: "Step 1: 1 + 1 = 2\nThe answer is \\boxed{2}.") as proxy:
        args = ["refine", "--input", str(sols), "--critiques", str(crits), "--out", str(out), "critique.teacher=openai",
                f"critique.base_url={proxy.url}/v1", f"critique.model={tiny_model}", "critique.concurrency=2"]
        env = {**os.environ, "OPENAI_API_KEY": "local"}
        store = out / "refined.jsonl"
        assert kill_at_random_moments(args, store, 16, kills=1, seed=4, env=env), "the run ended before the kill"
        done_before = len(read_store(store))
        assert 0 < done_before < 16
        sent_before = proxy.requests
        r = subprocess.run([sys.executable, "-m", "critiquelab.cli", *args], env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        assert proxy.requests - sent_before <= 16 - done_before + 2  # only what was not done (+ lost in flight)
    assert store.read_bytes().endswith(b"\n")  # the torn line was cut before the rerun appended
    ok = [r for r in read_jsonl(store) if r["status"] == "ok"]
    assert sorted(r["id"] for r in ok) == sorted(r["id"] for r in read_jsonl(sols))  # none lost, none twice
    assert "refined solutions in" in r.stdout and "16/16 ok" in r.stdout


def test_a_prompt_beyond_the_served_context_is_named(tiny_model, critiqued, tmp_path):
    """transformers serve refuses the 512-token model's over-long refine prompts: the one line names the
    context and the setting to change, not the model id (which is right)."""
    from critiquelab.io import UserError

    sols, crits = critiqued
    with transformers_serve(tiny_model, tmp_path / "serve.log") as url, pytest.raises(UserError) as e:
        run_critique(sols, tmp_path / "r", refiner(url, tiny_model, max_attempts=1), critiques=crits)
    assert "do not fit the served model's context" in str(e.value) and "critique.max_tokens" in str(e.value)
    assert "must be a model id" not in str(e.value)


def test_a_listed_context_is_checked_before_anything_is_sent(tiny_model, critiqued, tmp_path, monkeypatch):
    """Where the endpoint lists the model's context (vLLM's max_model_len), a prompt that cannot fit is
    one line before the first request: no request is sent, nothing is spent."""
    import critiquelab.critique as critique
    from critiquelab.io import UserError

    sols, crits = critiqued
    monkeypatch.setattr(critique, "served_context", lambda base_url, model, key=None: 512)
    with FaultProxy(None, reply=lambda req: "Step 1: 1 + 1 = 2") as proxy, pytest.raises(UserError) as e:
        run_critique(sols, tmp_path / "r", refiner(proxy.url, tiny_model), critiques=crits)
    assert proxy.requests == 0
    assert "context of 512 tokens (max_model_len)" in str(e.value) and "nothing was sent" in str(e.value)
