"""The refine task with an API teacher: a real OpenAI-compatible server (`transformers serve`) behind a
fault proxy, and kill -9 in the middle of a run (the critique stage's own guarantees, test_critique_api.py)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import checker_critiqued, kill_at_random_moments
from critiquelab.config import CritiqueConfig
from critiquelab.critique import read_store, run_critique
from critiquelab.io import read_jsonl
from tests.servers import FaultProxy, transformers_serve


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    with transformers_serve(tiny_model, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url


@pytest.fixture()
def critiqued(tmp_path, tiny_world):
    """Injected-error solutions of 16 world problems (about half right) and the exact checker's critiques."""
    return checker_critiqued(tiny_world, tmp_path, 16)


def refiner(url, model, **kw) -> CritiqueConfig:
    settings = dict(teacher="openai", base_url=url + "/v1", model=str(model), prompt="refine_paper", max_tokens=16,
                    timeout=60, concurrency=4, max_attempts=6, price_in_per_mtok=2.5, price_out_per_mtok=10.0)
    return CritiqueConfig(**{**settings, **kw})


def test_refine_from_a_real_server_survives_429_and_5xx(server, tiny_model, critiqued, tmp_path):
    sols, crits = critiqued
    faults = ["429", "500", "429", "500"]
    plan = lambda i: faults[i // 2] if i < 2 * len(faults) and i % 2 == 0 else None  # noqa: E731
    with FaultProxy(server, plan) as proxy:
        s = run_critique(sols, tmp_path / "r", refiner(proxy.url, tiny_model), critiques=crits)
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
