"""Generation backends: HF batching is exact; the OpenAI-compatible client against a real server."""

import json

import pytest

from critiquelab.config import EvalConfig
from critiquelab.evaluate import conversation, run_eval
from critiquelab.io import UserError, read_jsonl
from critiquelab.llm import HFBackend, OpenAIBackend, Sampling
from tests.servers import FaultProxy, transformers_serve


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory):
    with transformers_serve(tiny_model, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url + "/v1"


def test_batched_generation_matches_batch_size_one(tiny_model, tiny_world):
    problems = read_jsonl(tiny_world / "test.jsonl")[:12]
    convs = [conversation(p["question"]) for p in problems]
    s = Sampling(max_new_tokens=40)
    assert HFBackend(tiny_model, batch_size=8).generate(convs, s) == HFBackend(tiny_model, batch_size=1).generate(convs, s)


def test_generations_that_reach_max_new_tokens_are_counted_per_backend(served, tiny_model, tiny_world, tmp_path):
    """A generation cut by max_new_tokens (no end-of-turn token) is counted, by HF from the token ids and
    by the server's finish_reason; eval reports it in results.json and its summary line."""
    from critiquelab.evaluate import summary_line

    convs = [conversation(p["question"]) for p in read_jsonl(tiny_world / "test.jsonl")[:6]]
    short = HFBackend(tiny_model, batch_size=4)
    short.generate(convs, Sampling(max_new_tokens=3, stop=[]))
    assert short.ran_to_max == 6  # no world answer fits in 3 tokens
    remote = OpenAIBackend(served, str(tiny_model), concurrency=3)
    remote.generate(convs, Sampling(max_new_tokens=3, stop=[]))
    assert remote.ran_to_max == 6
    res = run_eval(tiny_model, tmp_path / "eval", EvalConfig(limit=5, max_new_tokens=3), world_dir=tiny_world)
    assert res["ran_to_max_new_tokens"] == 5
    assert "5 generations ran to max_new_tokens without ending their turn" in summary_line(res, tmp_path / "eval")


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


def test_openai_backend_retries_through_the_shared_policy():
    """A 429 waits its Retry-After (2 s; the first backoff would be at most 0.75 s); a 500 and an
    HTML 200 are retried; `max_retries` bounds the attempts; a 400 is never retried."""
    import time

    from critiquelab.io import Incomplete

    conv, want = [[{"role": "user", "content": "2+2?"}]], ["The steps are checked.\nConclusion: right [END]"]
    with FaultProxy(None, {0: "429"}.get, retry_after=2.0) as proxy:
        t0 = time.monotonic()
        assert OpenAIBackend(proxy.url + "/v1", "m").generate(conv, Sampling()) == want
        assert time.monotonic() - t0 >= 2.0 and proxy.requests == 2
    with FaultProxy(None, {0: "500", 1: "html"}.get) as proxy:
        assert OpenAIBackend(proxy.url + "/v1", "m", max_retries=2).generate(conv, Sampling()) == want
        assert proxy.requests == 3
    with FaultProxy(None, lambda i: "500") as proxy:
        with pytest.raises(Incomplete, match="InternalServerError"):
            OpenAIBackend(proxy.url + "/v1", "m", max_retries=1).generate(conv, Sampling())
        assert proxy.requests == 2
    with FaultProxy(None, lambda i: "400") as proxy:
        with pytest.raises(UserError, match="HTTP 400: injected 400"):
            OpenAIBackend(proxy.url + "/v1", "m").generate(conv, Sampling())
        assert proxy.requests == 1


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


# -- fitting prompts into the context, and seeds per sample (issues 22 and 23) -----------------------

def test_fit_context_shortens_the_generation_before_it_cuts_a_prompt():
    from critiquelab.llm import fit_context

    prompts = [[1] * 100, [2] * 300, [3] * 500]
    fit = fit_context(prompts, max_new_tokens=100, context=512)   # room beside each: 412, 212, 12
    assert fit.new_tokens == [100, 100, 100] and fit.prompts[:2] == prompts[:2]
    assert fit.prompts[2] == [3] * 412 and (fit.cut, fit.shortened) == (1, 0)  # only the last is cut
    fit = fit_context(prompts[:2], max_new_tokens=1024, context=512)  # the README's sample.max_new_tokens
    assert fit.prompts == prompts[:2] and fit.new_tokens == [412, 212] and (fit.cut, fit.shortened) == (0, 2)
    assert fit_context(prompts, 50, None).new_tokens == [50, 50, 50]  # no known context: as asked


def test_a_max_new_tokens_beyond_the_context_keeps_the_prompt_whole(tiny_model, tiny_world):
    """Before: the prompt was cut to its last max(1, 512 - max_new_tokens) tokens, i.e. one token,
    and the model answered nothing it had been asked."""
    problems = read_jsonl(tiny_world / "test.jsonl")[:6]
    convs = [conversation(p["question"]) for p in problems]
    short = HFBackend(tiny_model, batch_size=8).generate(convs, Sampling(max_new_tokens=40))
    backend = HFBackend(tiny_model, batch_size=8)
    long = backend.generate(convs, Sampling(max_new_tokens=1024))
    assert backend.context == 512 and backend.truncated == 0 and backend.shortened == len(convs)
    assert all(b.startswith(a) for a, b in zip(short, long, strict=True)), "greedy: the same start"


def _sampled_texts(path, backend, seed: int) -> list[str]:
    from critiquelab.llm import generate_resumable

    rows = [{"id": f"p-{j}", "question": "Tom has 3 apples and buys 4 more. How many apples does he have?"}
            for j in range(4)]  # four samples of one problem
    recs = generate_resumable(path, rows, backend, lambda r: conversation(r["question"]),
                              lambda r, text: {"id": r["id"], "text": text},
                              Sampling(max_new_tokens=24, temperature=1.0, seed=seed, stop=[]), chunk=8,
                              settings={"test": "seeds"})
    return [r["text"] for r in recs]


def test_samples_of_one_prompt_differ_and_repeat_with_the_seed_on_a_real_server(tiny_model, tmp_path):
    """Before: every request of a chunk carried the chunk's seed, so a server that honours `seed`
    (vLLM's, transformers serve) returned the same text n times."""
    import json
    import shutil

    model = tmp_path / "sampling-model"
    shutil.copytree(tiny_model, model)
    gen_config = json.loads((model / "generation_config.json").read_text()) \
        if (model / "generation_config.json").exists() else {}
    (model / "generation_config.json").write_text(json.dumps({**gen_config, "do_sample": True}))
    with transformers_serve(model, tmp_path / "serve.log") as url, FaultProxy(url) as proxy:
        def backend():
            return OpenAIBackend(proxy.url + "/v1", str(model), concurrency=1)  # (the server seeds one global RNG)

        first = _sampled_texts(tmp_path / "a.jsonl", backend, seed=3)
        again = _sampled_texts(tmp_path / "b.jsonl", backend, seed=3)
    seeds = [json.loads(b)["seed"] for b in proxy.bodies]
    assert len(set(seeds[:4])) == 4 and sorted(seeds[4:]) == sorted(seeds[:4]), seeds  # one seed per sample
    assert len(set(first)) == 4, first
    assert again == first


def test_samples_of_one_prompt_differ_and_repeat_with_the_seed_on_hf(tiny_model, tmp_path):
    def backend():
        return HFBackend(tiny_model)

    first = _sampled_texts(tmp_path / "a.jsonl", backend, seed=3)
    assert len(set(first)) == 4 and _sampled_texts(tmp_path / "b.jsonl", backend, seed=3) == first
    assert _sampled_texts(tmp_path / "c.jsonl", backend, seed=4) != first


def test_eval_with_max_new_tokens_beyond_the_context_says_so_and_keeps_its_prompts(tiny_model, tiny_world, tmp_path,
                                                                                   capsys):
    """The README's eval.max_new_tokens=2048 on the demo's 512-token model: before, accuracy fell to
    0 with exit 0 and no word; now every prompt is whole and the summary line says what was shortened."""
    from critiquelab.cli import main

    rc = main(["eval", "--model", str(tiny_model), "--world", str(tiny_world), "--out", str(tmp_path / "e"),
               "eval.max_new_tokens=2048", "eval.limit=8"])
    line = capsys.readouterr().out
    assert rc == 0 and "8 generations shortened to fit the model's context" in line, line
    res = json.loads((tmp_path / "e" / "results.json").read_text())
    assert res["truncated_prompts"] == 0 and res["shortened_generations"] == 8


def test_each_benchmarks_warning_counts_its_own_generations(tiny_model, tiny_world, tmp_path, caplog):
    """Two benchmarks of one eval: each file's warning counts that file's shortened generations (it
    used to count every benchmark's so far), and the summary counts them all."""
    import logging

    from critiquelab.config import EvalConfig
    from critiquelab.evaluate import run_eval

    with caplog.at_level(logging.WARNING):
        res = run_eval(tiny_model, tmp_path / "e", EvalConfig(benchmarks=["world", "world-validation"], limit=8,
                                                             max_new_tokens=2048), world_dir=tiny_world)
    warned = [r.getMessage() for r in caplog.records if "generations got fewer" in r.getMessage()]
    assert len(warned) == 2 and all(": 8 generations got fewer" in m for m in warned), warned
    assert res["shortened_generations"] == 16
