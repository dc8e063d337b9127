"""Data-parallel generation (`llm.run_shards`): shards generated in spawned processes merge into the
one resumable store with the same records as one process, no duplicate and no gap; a run resumes
across changes of data_parallel; shards left by a killed run are merged on the next start; a failed
process keeps its finished items and ends the stage as Incomplete. A real tiny HF model on the CPU."""

import json
import shutil
from dataclasses import replace
from functools import partial

import pytest

from critiquelab.cli import main
from critiquelab.config import CritiqueConfig, EvalConfig, RunConfig, SampleConfig, load_config
from critiquelab.critique import run_critique
from critiquelab.evaluate import conversation, run_eval
from critiquelab.io import Incomplete, UserError, read_jsonl
from critiquelab.llm import HFBackend, Sampling, generate_resumable, gpu_shares, shard_files
from critiquelab.sample import run_sample

CFG = EvalConfig(max_new_tokens=32, batch_size=8)


class Counting(HFBackend):
    """Counts the conversations it generates for."""

    calls = 0

    def generate(self, conversations, sampling, on_batch=None, seeds=None):
        Counting.calls += len(conversations)
        return super().generate(conversations, sampling, on_batch, seeds)


class FailsOn(HFBackend):
    """Generates normally, but fails on a batch holding the `poison` question (in its own process)."""

    def __init__(self, model_dir, poison: str, **kwargs):
        super().__init__(model_dir, **kwargs)
        self.poison = poison

    def generate(self, conversations, sampling, on_batch=None, seeds=None):
        if any(self.poison in m["content"] for c in conversations for m in c):
            raise RuntimeError("the GPU fell off the bus")
        return super().generate(conversations, sampling, on_batch, seeds)


def lines(path):
    return path.read_text().splitlines()


def by_key(path) -> dict:
    rows = [json.loads(line) for line in lines(path)]
    keyed = {r["key"]: r for r in rows}
    assert len(keyed) == len(rows), "a key is in the store twice"
    return keyed


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_world, tiny_model):
    """The greedy eval of the world's 30 test items in one process."""
    out = tmp_path_factory.mktemp("reference") / "eval"
    return out, run_eval(tiny_model, out, CFG, world_dir=tiny_world)


def test_two_processes_write_the_same_records_as_one(tmp_path, tiny_world, tiny_model, reference):
    ref_dir, ref = reference
    two = run_eval(tiny_model, tmp_path / "eval", replace(CFG, data_parallel=2), world_dir=tiny_world)
    assert by_key(tmp_path / "eval" / "world.jsonl") == by_key(ref_dir / "world.jsonl")
    assert len(lines(tmp_path / "eval" / "world.jsonl")) == 30
    assert two["benchmarks"] == ref["benchmarks"] and two["backend"] == f"hf:{tiny_model}"
    assert not shard_files(tmp_path / "eval" / "world.jsonl")


def test_a_run_resumes_across_data_parallel_reusing_finished_items(tmp_path, tiny_world, tiny_model, reference):
    out = tmp_path / "eval"
    run_eval(tiny_model, out, replace(CFG, limit=12), world_dir=tiny_world)  # the first 12 items, one process
    first = lines(out / "world.jsonl")
    res = run_eval(tiny_model, out, replace(CFG, data_parallel=2), world_dir=tiny_world)
    assert lines(out / "world.jsonl")[:12] == first  # finished items kept, not generated again
    assert by_key(out / "world.jsonl") == by_key(reference[0] / "world.jsonl")
    assert res["benchmarks"] == reference[1]["benchmarks"]
    Counting.calls = 0
    run_eval(tiny_model, out, CFG, world_dir=tiny_world, backend=Counting(tiny_model))  # and back to one
    assert Counting.calls == 0 and len(lines(out / "world.jsonl")) == 30


def test_shards_left_by_a_killed_run_are_merged_once(tmp_path, tiny_world, tiny_model, reference):
    out = tmp_path / "eval"
    shutil.copytree(reference[0], out)
    store = out / "world.jsonl"
    done = [json.loads(line) for line in lines(store)]
    store.write_text("\n".join(lines(store)[:10]) + "\n")  # items 0-9 reached the store
    raw = [json.dumps({"key": r["key"], "text": r["response"]}) for r in done]
    (out / "world.jsonl.shard-0").write_text("\n".join(raw[5:15]) + "\n")  # 5-9 were merged before the kill
    (out / "world.jsonl.shard-1").write_text("\n".join(raw[15:20]) + "\n" + raw[20][:25])  # a torn last line
    Counting.calls = 0
    res = run_eval(tiny_model, out, CFG, world_dir=tiny_world, backend=Counting(tiny_model))
    assert Counting.calls == 10  # items 20-29: the torn one and those no shard reached
    assert by_key(store) == by_key(reference[0] / "world.jsonl") and len(lines(store)) == 30
    assert res["benchmarks"] == reference[1]["benchmarks"] and not shard_files(store)


def test_a_failed_process_keeps_its_finished_items_and_the_stage_is_incomplete(tmp_path, tiny_world, tiny_model):
    rows = read_jsonl(tiny_world / "test.jsonl")[:16]
    store = tmp_path / "out.jsonl"

    def run(backend, data_parallel):
        return generate_resumable(store, rows, backend, lambda r: conversation(r["question"]),
                                  lambda r, text: {"id": r["id"], "text": text}, Sampling(max_new_tokens=16),
                                  chunk=4, settings={"test": 1}, data_parallel=data_parallel)

    # round-robin: process 1 has items 1, 3, ..., 15 in two chunks; the second chunk holds item 15
    with pytest.raises(Incomplete, match=r"shard 1 of 2 failed \(RuntimeError: the GPU fell off the bus\)"):
        run(partial(FailsOn, tiny_model, rows[15]["question"], batch_size=4), 2)
    kept = lines(store)
    assert len(by_key(store)) == 12 and not shard_files(store)  # process 0's 8 items and process 1's first 4
    assert {json.loads(line)["id"] for line in kept} == {r["id"] for i, r in enumerate(rows) if i % 2 == 0 or i < 8}
    with pytest.raises(UserError, match="not a model directory"):  # a bad model stays a one-line user error
        run(partial(HFBackend, tmp_path / "no-model"), 2)
    records = run(partial(HFBackend, tiny_model, batch_size=4), 1)  # the rerun does the 4 missing items
    assert lines(store)[:12] == kept and len(by_key(store)) == 16
    assert [r["id"] for r in records] == [r["id"] for r in rows]


def test_sample_and_a_local_teacher_share_the_mechanism(tmp_path, tiny_world, tiny_model):
    scfg = SampleConfig(n_problems=8, n_per_problem=2, temperature=0.0, max_new_tokens=24, batch_size=4)
    one = tmp_path / "one.jsonl"
    run_sample(tiny_world / "train.jsonl", one, scfg, tiny_model)
    two = tmp_path / "two.jsonl"
    run_sample(tiny_world / "train.jsonl", two, replace(scfg, data_parallel=2), tiny_model)
    assert lines(two) == lines(one) and len(lines(two)) == 16  # same file: rows, keys, order, greedy texts
    assert not (tmp_path / "two.jsonl.partial").exists() and not shard_files(tmp_path / "two.jsonl.partial")
    tcfg = CritiqueConfig(teacher="hf", model=str(tiny_model), temperature=0.0, max_tokens=16)
    s1 = run_critique(two, tmp_path / "c1", tcfg)
    s2 = run_critique(two, tmp_path / "c2", replace(tcfg, data_parallel=2))
    assert s1 == s2 and s2["ok"] == s2["items"] == 16
    assert by_key(tmp_path / "c2" / "critiques.jsonl") == by_key(tmp_path / "c1" / "critiques.jsonl")
    assert not shard_files(tmp_path / "c2" / "critiques.jsonl")


@pytest.mark.parametrize("override, message", [
    ("eval.data_parallel=0", "eval.data_parallel=0: must be at least 1"),
    ("critic.tensor_parallel=-1", "critic.tensor_parallel=-1: must be at least 0"),
    ("sample.backend=openai", "sample.backend='openai': use one of hf, vllm"),
    ("critique.data_parallel=true", "critique.data_parallel: expected int, got True"),
])
def test_bad_values_are_one_line(override, message):
    with pytest.raises(UserError) as e:
        load_config(RunConfig, None, [override])
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("overrides, message", [
    (["eval.tensor_parallel=2"], "eval.tensor_parallel=2: only vllm shards a model over GPUs (the backend is hf)"),
    (["eval.backend=openai", "eval.base_url=http://127.0.0.1:9/v1", "eval.data_parallel=2"],
     "eval.data_parallel=2: an openai endpoint runs elsewhere; raise eval.concurrency instead"),
])
def test_bad_combinations_are_one_line_before_anything_is_written(tmp_path, tiny_world, tiny_model, capsys,
                                                                   overrides, message):
    code = main(["eval", "--model", str(tiny_model), "--world", str(tiny_world), "--out", str(tmp_path / "e"),
                 *overrides])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and not (tmp_path / "e").exists()


def test_gpus_are_split_between_processes(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,6,7")
    assert gpu_shares(2, 0) == ["2,3", "6,7"] and gpu_shares(4, 1) == ["2", "3", "6", "7"]
    assert gpu_shares(1, 0) == ["2,3,6,7"]
    with pytest.raises(UserError, match="data_parallel=2 x tensor_parallel=4 needs 8 GPUs, 4 are visible"):
        gpu_shares(2, 4)
    with pytest.raises(UserError, match="data_parallel=8 x tensor_parallel=1 needs 8 GPUs, 4 are visible"):
        gpu_shares(8, 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert gpu_shares(8, 0) is None  # the CPU: each process takes its share of the cores
