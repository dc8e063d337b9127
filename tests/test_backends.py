"""Generation backends: HF batching is exact; the OpenAI-compatible client against a real server."""

import pytest

from critiquelab.config import EvalConfig
from critiquelab.evaluate import conversation, run_eval
from critiquelab.io import UserError, read_jsonl
from critiquelab.llm import HFBackend, OpenAIBackend, Sampling
from tests.servers import transformers_serve


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory):
    with transformers_serve(tiny_model, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url + "/v1"


def test_batched_generation_matches_batch_size_one(tiny_model, tiny_world):
    problems = read_jsonl(tiny_world / "test.jsonl")[:12]
    convs = [conversation(p["question"]) for p in problems]
    s = Sampling(max_new_tokens=40)
    assert HFBackend(tiny_model, batch_size=8).generate(convs, s) == HFBackend(tiny_model, batch_size=1).generate(convs, s)


def test_openai_backend_against_real_server_matches_local_greedy(served, tiny_model, tiny_world):
    problems = read_jsonl(tiny_world / "test.jsonl")[:4]
    convs = [conversation(p["question"]) for p in problems]
    s = Sampling(max_new_tokens=30, stop=[])
    remote = OpenAIBackend(served, str(tiny_model), concurrency=4).generate(convs, s)
    local = HFBackend(tiny_model).generate(convs, s)
    assert any(r.strip() for r in remote), "the tiny model should emit some text"
    assert [r.strip() for r in remote] == [x.strip() for x in local]  # the server strips whitespace


def test_eval_through_openai_backend(served, tiny_model, tiny_world, tmp_path):
    cfg = EvalConfig(backend="openai", base_url=served, api_model=str(tiny_model), limit=3, max_new_tokens=30)
    res = run_eval(tiny_model, tmp_path / "eval", cfg, world_dir=tiny_world)
    assert res["backend"].startswith("openai:") and res["benchmarks"]["world"]["n"] == 3


def test_openai_backend_needs_a_url(tiny_model, tiny_world, tmp_path):
    with pytest.raises(UserError, match="base_url"):
        run_eval(tiny_model, tmp_path / "e", EvalConfig(backend="openai"), world_dir=tiny_world)


def test_every_benchmark_evaluates_with_limit(tiny_model, tmp_path):
    names = ["math-500", "minerva_math", "gsm8k", "olympiadbench", "aime24", "amc23", "theoremqa"]
    res = run_eval(tiny_model, tmp_path / "eval", EvalConfig(benchmarks=names, limit=2, max_new_tokens=16))
    assert set(res["benchmarks"]) == set(names)
    assert all(r["n"] == 2 for r in res["benchmarks"].values())
    for name in names:
        rows = read_jsonl(tmp_path / "eval" / f"{name}.jsonl")
        assert all(r["reference"] is not None and "reason" in r for r in rows)
