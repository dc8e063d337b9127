"""The API teacher against a real OpenAI-compatible server, with faults injected by a proxy."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from conftest import kill_at_random_moments
from critiquelab.config import CritiqueConfig
from critiquelab.critique import latest_ok, read_store, run_critique, shard_filter
from critiquelab.io import Incomplete, UserError, read_jsonl, write_jsonl
from tests.servers import FaultProxy, transformers_serve


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    with transformers_serve(tiny_model, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url


@pytest.fixture()
def solutions(tmp_path, tiny_world):
    rows = [{"id": f"p{i}-s0", "problem_id": f"p{i}", "question": p["question"], "solution": p["solution"]}
            for i, p in enumerate(read_jsonl(tiny_world / "train.jsonl")[:24])]
    path = tmp_path / "solutions.jsonl"
    write_jsonl(path, rows)
    return path


def api_cfg(url, model, **kw) -> CritiqueConfig:
    # timeout: far above what a loaded host needs for 16 tokens of the tiny model with 4 requests queued at the
    # one-at-a-time server (timeout=3 with 8 in flight timed out under a load of 7 on 2 cores: a test of the load)
    settings = dict(teacher="openai", base_url=url + "/v1", model=str(model), max_tokens=16, timeout=30,
                    concurrency=4, max_attempts=6, price_in_per_mtok=2.5, price_out_per_mtok=10.0)
    return CritiqueConfig(**{**settings, **kw})


def test_every_fault_is_survived_and_nothing_lost_or_duplicated(server, tiny_model, solutions, tmp_path):
    faults = ["429", "500", "malformed", "empty", "html", "slow", "cut"]
    plan = lambda i: faults[i // 2] if i < 2 * len(faults) and i % 2 == 0 else None  # noqa: E731
    with FaultProxy(server, plan, slow_s=35.0) as proxy:  # (slow: past the client's timeout)
        s = run_critique(solutions, tmp_path / "c", api_cfg(proxy.url, tiny_model))
    assert sorted(set(proxy.faults)) == sorted(faults)
    assert s["ok"] == s["items"] == 24 and s["failed"] == 0
    ok = latest_ok(tmp_path / "c" / "critiques.jsonl")
    assert sorted(i for i, _ in ok) == sorted(r["id"] for r in read_jsonl(solutions))
    lines = read_jsonl(tmp_path / "c" / "critiques.jsonl")
    assert sum(r["status"] == "ok" for r in lines) == 24  # each item exactly once
    ledger = json.loads((tmp_path / "c" / "ledger.json").read_text())
    assert ledger["prompt_tokens"] > 0 and ledger["cost_usd"] > 0
    # answers the endpoint produced but the client lost: the 5 injected (malformed, empty, html, slow >
    # timeout, cut), plus any request that timed out queueing at the one-at-a-time server
    attempts = sum(r["attempts"] for r in lines)
    assert 5 <= ledger["lost_requests"] < attempts and ledger["lost_tokens_estimate"]["estimate"] is True
    assert ledger["lost_tokens_estimate"]["prompt"] > 0 and ledger["lost_cost_usd_estimate"] > 0


def test_permanent_failures_are_recorded_then_retried_next_run(server, tiny_model, solutions, tmp_path):
    with FaultProxy(server, lambda i: "500" if i < 100 else None) as proxy:
        cfg = api_cfg(proxy.url, tiny_model, max_attempts=2, timeout=60)  # only the injected 500s fail
        with pytest.raises(Incomplete) as e:
            run_critique(solutions, tmp_path / "c", cfg)
        first = e.value.summary
        assert first["failed"] > 0 and first["ok"] + first["failed"] == 24
        assert f"{first['failed']} of 24 items failed" in str(e.value)
        failed = [r for r in read_jsonl(tmp_path / "c" / "critiques.jsonl") if r["status"] == "failed"]
        assert all("InternalServerError" in r["error"] for r in failed)
        for _ in range(10):  # use up the failing part of the plan: a run sends at most 24 x 2 requests
            if proxy.requests >= 100:
                break
            try:
                run_critique(solutions, tmp_path / "c", cfg)
            except Incomplete:
                pass
        else:
            pytest.fail(f"10 reruns sent only {proxy.requests} of the 100 requests the plan fails")
        second = run_critique(solutions, tmp_path / "c", cfg)
    assert second["ok"] == 24 and second["failed"] == 0


def test_wrong_api_key_stops_at_once(server, tiny_model, solutions, tmp_path):
    with FaultProxy(server, lambda i: "401") as proxy:
        with pytest.raises(UserError, match="OPENAI_API_KEY"):
            run_critique(solutions, tmp_path / "c", api_cfg(proxy.url, tiny_model, concurrency=2))
        assert proxy.requests <= 3  # no retry storm


def test_dry_run_sends_nothing(tiny_model, solutions, tmp_path):
    with FaultProxy(None) as proxy:
        est = run_critique(solutions, tmp_path / "c", api_cfg(proxy.url, tiny_model), dry_run=True)
        assert proxy.requests == 0
    assert est["items_to_do"] == 24 and est["prompt_tokens_est"] > 0 and est["cost_usd_max"] > 0
    assert not (tmp_path / "c" / "critiques.jsonl").exists()


def test_shards_partition_the_items(solutions):
    rows = read_jsonl(solutions)
    parts = [shard_filter(rows, f"{i}/3") for i in range(3)]
    ids = [r["id"] for p in parts for r in p]
    assert sorted(ids) == sorted(r["id"] for r in rows)
    with pytest.raises(UserError, match="shard"):
        shard_filter(rows, "3/3")


def test_api_key_is_never_written(server, tiny_model, solutions, tmp_path, monkeypatch):
    secret = "sk-test-SECRET-never-on-disk"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with FaultProxy(server) as proxy:
        run_critique(solutions, tmp_path / "c", api_cfg(proxy.url, tiny_model))
    for f in (tmp_path / "c").iterdir():
        assert secret not in f.read_text()


def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(tiny_model, solutions, tmp_path):
    out = tmp_path / "c"
    with FaultProxy(None, latency_s=0.3) as proxy:
        args = ["critique", "--input", str(solutions), "--out", str(out), "critique.teacher=openai",
                f"critique.base_url={proxy.url}/v1", f"critique.model={tiny_model}", "critique.concurrency=2"]
        env = {**os.environ, "OPENAI_API_KEY": "local"}
        store = out / "critiques.jsonl"
        assert kill_at_random_moments(args, store, 24, kills=1, seed=5, env=env), "the run ended before the kill"
        done_before = len(latest_ok(store))
        assert 0 < done_before < 24
        subprocess.run([sys.executable, "-m", "critiquelab.cli", *args], env=env, check=True, capture_output=True,
                       timeout=300)
    assert store.read_bytes().endswith(b"\n")  # the torn line was cut before the rerun appended
    ok_lines = [r for r in read_jsonl(store) if r["status"] == "ok"]
    assert sorted(r["id"] for r in ok_lines) == sorted(r["id"] for r in read_jsonl(solutions))  # 0 lost, 0 dup
    assert len(read_store(store)) == 24


def test_end_to_end_questions_to_datasets_with_a_served_teacher(server, tiny_model, tiny_world, tmp_path):
    """question file -> sampled solutions -> critiques from the local server -> filtered,
    decontaminated datasets in every export format."""
    from critiquelab.build import run_build
    from critiquelab.config import BuildConfig, SampleConfig
    from critiquelab.sample import run_sample

    questions = tmp_path / "questions.jsonl"
    write_jsonl(questions, [{"id": p["id"], "question": p["question"], "answer": p["answer"]}
                            for p in read_jsonl(tiny_world / "train.jsonl")[:12]])
    s = run_sample(questions, tmp_path / "solutions.jsonl",
                   SampleConfig(n_problems=12, n_per_problem=2, temperature=1.0, max_new_tokens=40), tiny_model)
    assert s["solutions"] == 24
    with FaultProxy(server, lambda i: "500" if i % 5 == 0 else None) as proxy:
        c = run_critique(tmp_path / "solutions.jsonl", tmp_path / "critique", api_cfg(proxy.url, tiny_model))
    nonempty = sum(bool(r["solution"].strip()) for r in read_jsonl(tmp_path / "solutions.jsonl"))
    assert c["ok"] == c["items"] == nonempty > 0
    res = run_build(tmp_path / "solutions.jsonl", tmp_path / "critique" / "critiques.jsonl", tmp_path / "ds",
                    BuildConfig(methods=["sft_noisy", "cft"], require_verdict=False,
                                exports=["trl_text", "hf", "parquet", "alpaca"]))
    assert res["counts"] == {"sft_noisy": nonempty, "cft": nonempty} and res["decontaminate_removed"] == {}
    for sub in ("trl_text", "hf", "parquet", "alpaca"):
        assert (tmp_path / "ds" / sub).is_dir()


def test_teacher_solutions_from_the_served_model_feed_sft_teacher(server, tiny_model, solutions, tmp_path):
    from critiquelab.build import run_build
    from critiquelab.config import BuildConfig

    s = run_critique(solutions, tmp_path / "solve", api_cfg(server, tiny_model, prompt="solve_paper", max_tokens=24))
    assert s["ok"] == 24
    store = read_jsonl(tmp_path / "solve" / "solutions.jsonl")
    assert all("solution" in r and "critique" not in r and r["verdict"] is None for r in store)
    critiques = run_critique(solutions, tmp_path / "c", api_cfg(server, tiny_model, max_tokens=16))
    assert critiques["ok"] == 24
    counts = run_build(solutions, tmp_path / "c" / "critiques.jsonl", tmp_path / "ds",
                       BuildConfig(methods=["sft_teacher", "cft"], decontaminate=False, require_verdict=False),
                       teacher_solutions=tmp_path / "solve" / "solutions.jsonl")["counts"]
    assert counts["sft_teacher"] == 24
    served = {r["solution"] for r in store}
    assert {r["completion"][0]["content"] for r in read_jsonl(tmp_path / "ds" / "sft_teacher.jsonl")} == served


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "critiquelab.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_dead_endpoint_is_one_line_and_a_dying_one_exits_3_then_resumes(tiny_model, solutions, tmp_path):
    from tests.servers import free_port

    args = ["critique", "--input", str(solutions), "--out", str(tmp_path / "c"), "critique.teacher=openai",
            f"critique.model={tiny_model}", "critique.max_attempts=2", "critique.timeout=20"]
    dead = run_cli(*args, f"critique.base_url=http://127.0.0.1:{free_port()}/v1")
    assert dead.returncode == 2 and "cannot connect" in dead.stderr and len(dead.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()
    with FaultProxy(None, lambda i: "down" if i >= 10 else None) as proxy:  # serves 10, then goes down
        dying = run_cli(*args, f"critique.base_url={proxy.url}/v1")
    assert dying.returncode == 3, dying.stderr
    assert "incomplete: 14 of 24 items failed" in dying.stderr and "rerun" in dying.stderr
    with FaultProxy(None) as proxy:
        again = run_cli(*args, f"critique.base_url={proxy.url}/v1")
    assert again.returncode == 0, again.stderr
    assert "24/24 ok" in again.stdout and "cost unknown" in again.stdout  # no price given: never $0
    store = read_jsonl(tmp_path / "c" / "critiques.jsonl")
    assert sorted(r["id"] for r in store if r["status"] == "ok") == sorted(r["id"] for r in read_jsonl(solutions))
    ledger = json.loads((tmp_path / "c" / "ledger.json").read_text())
    assert ledger["cost_usd"] is None and "price unknown" in ledger["note"]


def test_dry_run_without_prices_says_price_unknown(tiny_model, solutions, tmp_path):
    cfg = api_cfg("http://127.0.0.1:9", tiny_model, price_in_per_mtok=None, price_out_per_mtok=None)
    est = run_critique(solutions, tmp_path / "c", cfg, dry_run=True)
    assert est["cost_usd_max"] is None and "price unknown" in est["cost"]


def test_inputs_are_checked_and_keyed_by_content(tmp_path, tiny_world):
    from critiquelab.build import run_build
    from critiquelab.config import BuildConfig, SampleConfig
    from critiquelab.sample import run_sample

    sols = tmp_path / "solutions.jsonl"
    run_sample(tiny_world / "train.jsonl", sols, SampleConfig(source="synthetic", n_problems=6, error_rate=0.5))
    rows = read_jsonl(sols)
    dup = tmp_path / "dup.jsonl"
    write_jsonl(dup, [*rows, {**rows[1], "solution": "another text"}])
    with pytest.raises(UserError, match=f"{dup}:7: duplicate id .* \\(also on line 2\\)"):
        run_critique(dup, tmp_path / "x", CritiqueConfig())
    null = tmp_path / "null.jsonl"
    write_jsonl(null, [{**rows[0], "solution": None}])
    with pytest.raises(UserError, match=f"{null}:1: missing field 'solution'"):
        run_critique(null, tmp_path / "x", CritiqueConfig())
    assert not (tmp_path / "x").exists()
    run_critique(sols, tmp_path / "c", CritiqueConfig())
    # the same id with a changed solution: critiqued again, and build pairs it with the new critique only
    changed = {**rows[0], "solution": rows[0]["reference_solution"]}
    write_jsonl(sols, [changed, *rows[1:]])
    s = run_critique(sols, tmp_path / "c", CritiqueConfig())
    assert s["ok"] == 6 and len(read_jsonl(tmp_path / "c" / "critiques.jsonl")) == 7
    built = run_build(sols, tmp_path / "c" / "critiques.jsonl", tmp_path / "ds",
                      BuildConfig(methods=["cft"], decontaminate=False))
    cft = read_jsonl(tmp_path / "ds" / "cft.jsonl")
    first = next(r for r in cft if changed["solution"] in r["prompt"][0]["content"])
    assert built["counts"]["cft"] == 6 and first["completion"][0]["content"].endswith("Conclusion: right [END]")


def test_the_batch_api_teacher_resumes_at_every_step_and_costs_half(server, tiny_model, solutions, tmp_path):
    """critique.api_mode=batch against the Batch API in front of the real server: a create that
    fails after the upload resumes without uploading again; a run that does not wait is collected
    by the next one without a second batch; items the batch could not answer (an error, an expiry)
    fail, exit 3, and go into a new batch on the rerun; the ledger prices batch answers at half."""
    from tests.servers import BatchAPI

    rows = read_jsonl(solutions)[:6]
    write_jsonl(solutions, rows)
    out = tmp_path / "crit"
    with BatchAPI(server, fail_create=1) as api:  # the run stops between the upload and the batch
        cfg = api_cfg(api.url, tiny_model, api_mode="batch", batch_poll_seconds=0.05, max_tokens=12)
        with pytest.raises(Incomplete, match="every step done so far is recorded"):
            run_critique(solutions, out, cfg)
        assert api.uploads == 1 and api.creates == 0
        with pytest.raises(Incomplete, match="1 batch\\(es\\) still running"):
            run_critique(solutions, out, replace(cfg, batch_wait=False))
        assert api.uploads == 1 and api.creates == 1  # the same file, now in a batch
        summary = run_critique(solutions, out, cfg)  # collects that batch: no new upload, no new batch
        assert summary["ok"] == 6 and api.uploads == 1 and api.creates == 1
    store = read_store(out / "critiques.jsonl")
    assert len(store) == 6 and all(r["batch"] == "batch-0" for r in store.values())
    ledger = json.loads((out / "ledger.json").read_text())
    full = ledger["prompt_tokens"] / 1e6 * 2.5 + ledger["completion_tokens"] / 1e6 * 10.0
    assert ledger["batch"]["requests_answered"] == 6 and ledger["cost_usd"] == pytest.approx(full / 2, abs=1e-4)

    out2 = tmp_path / "crit2"
    with BatchAPI(server, errors={0}, expire={1}) as api:  # the first request fails, the second expires
        cfg = api_cfg(api.url, tiny_model, api_mode="batch", batch_poll_seconds=0.05, max_tokens=12)
        with pytest.raises(Incomplete, match="2 of 6 items failed"):
            run_critique(solutions, out2, cfg)
        failed = {r["id"]: r for r in read_store(out2 / "critiques.jsonl").values() if r["status"] == "failed"}
        assert set(failed) == {rows[0]["id"], rows[1]["id"]}
        assert "injected" in failed[rows[0]["id"]]["error"] and "expired" in failed[rows[1]["id"]]["error"]
        api.errors, api.expire = set(), set()
        assert run_critique(solutions, out2, cfg)["ok"] == 6
        assert api.creates == 2 and len(api.batches["batch-1"]["_ids"]) == 2  # only the two failed items again
    assert sum(r["status"] == "ok" for r in read_store(out2 / "critiques.jsonl").values()) == 6


def test_a_wrong_model_name_is_one_line_with_the_servers_message_not_rerun_advice(server, tiny_model, solutions,
                                                                                  tmp_path):
    """transformers serve answers 400 with a body naming the problem: shown, exit 2, no retry storm."""
    with FaultProxy(server) as proxy:  # a pass-through, to count what was sent
        r = run_cli("critique", "--input", str(solutions), "--out", str(tmp_path / "c"), "critique.teacher=openai",
                    f"critique.base_url={proxy.url}/v1", "critique.model=no-such-model", "critique.max_tokens=8",
                    "critique.concurrency=4")
        assert proxy.requests <= 4
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "HTTP 400" in last and "no-such-model" in last and str(tiny_model) in last  # the body; the served id
    assert "incomplete" not in r.stderr and "rerun the same command" not in r.stderr


def test_openai_backend_shows_a_refusal_and_does_not_call_it_incomplete(server, tiny_model):
    from critiquelab.llm import OpenAIBackend, Sampling

    with pytest.raises(UserError, match=f"HTTP 400: .*no-such-model.*it lists: {tiny_model}"):
        OpenAIBackend(server + "/v1", "no-such-model").generate([[{"role": "user", "content": "2+2?"}]],
                                                                Sampling(max_new_tokens=4))


def test_one_refused_item_among_answered_ones_is_kept_apart_and_exit_2(server, tiny_model, solutions, tmp_path):
    """After answers came back, a 400 concerns that item alone: the others finish, then one line names it."""
    with FaultProxy(server, lambda i: "400" if i == 5 else None) as proxy:
        with pytest.raises(UserError, match=r"refused 1 of 24 items \(item .*HTTP 400: injected 400\)"):
            run_critique(solutions, tmp_path / "c", api_cfg(proxy.url, tiny_model, concurrency=1, timeout=60))
        assert proxy.requests == 24  # not retried, nothing else stopped
    store = read_store(tmp_path / "c" / "critiques.jsonl")
    assert sum(r["status"] == "ok" for r in store.values()) == 23


def test_a_refused_batch_is_one_line(server, tiny_model, solutions, tmp_path):
    from tests.servers import BatchAPI

    with BatchAPI(server, fail_create=1, fail_status=400) as api:
        cfg = api_cfg(api.url, tiny_model, api_mode="batch", batch_poll_seconds=0.05, max_tokens=12)
        with pytest.raises(UserError, match="batch endpoint refused the request \\(HTTP 400: injected\\)"):
            run_critique(solutions, tmp_path / "c", cfg)


def test_dry_run_counts_prompt_tokens_with_the_teachers_tokenizer_and_bounds_completions(server, tiny_model,
                                                                                         solutions, tmp_path):
    """The estimate is checked against what the served teacher then reports."""
    write_jsonl(solutions, read_jsonl(solutions)[:6])
    cfg = api_cfg(server, tiny_model, max_tokens=16)
    est = run_critique(solutions, tmp_path / "c", cfg, dry_run=True)
    assert "tokenizer" in est["prompt_tokens_from"] and "upper bound" in est["completion_tokens_max_from"]
    assert all(not k.endswith("_typical") for k in est)  # no made-up typical figure
    run_critique(solutions, tmp_path / "c", cfg)
    ledger = json.loads((tmp_path / "c" / "ledger.json").read_text())
    assert est["prompt_tokens_est"] == ledger["prompt_tokens"]
    assert ledger["completion_tokens"] <= est["completion_tokens_max"] == 6 * 16
    assert ledger["cost_usd"] <= est["cost_usd_max"]


def test_dry_run_says_when_it_guesses_and_the_checker_costs_nothing(solutions, tiny_world, tmp_path):
    guess = run_critique(solutions, tmp_path / "c", api_cfg("http://127.0.0.1:9", "gpt-4o-2024-11-20"), dry_run=True)
    assert guess["prompt_tokens_from"].startswith("estimate: characters / 4")
    write_jsonl(solutions, [{**p, "id": f"{p['id']}-s0"} for p in read_jsonl(tiny_world / "train.jsonl")[:24]])
    r = run_cli("critique", "--input", str(solutions), "--out", str(tmp_path / "k"), "--dry-run")  # the checker
    assert r.returncode == 0, r.stderr
    assert "24 items, the exact checker writes its critiques without an LLM: no tokens, no cost" in r.stdout
    checker = run_critique(solutions, tmp_path / "k", CritiqueConfig(), dry_run=True)
    assert checker["completion_tokens_max"] == checker["prompt_tokens_est"] == 0 and checker["cost_usd_max"] == 0


@pytest.mark.parametrize("message", [
    "The prompt has 698 tokens, but the model takes at most 512, prompt and answer (`--max-model-len`).",
    "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.",
    "Error code: context_length_exceeded",
])
def test_a_context_refusal_is_explained_as_one(message):
    from critiquelab.io import refused_hint

    hint = refused_hint(400, "http://127.0.0.1:9/v1", "critique.model", why=f"HTTP 400: {message}",
                        max_tokens_key="critique.max_tokens")
    assert "do not fit the served model's context" in hint and "critique.max_tokens" in hint
    assert "model id" not in hint
