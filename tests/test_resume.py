"""Crash safety: kill -9 at random moments of sample, eval and judge (critique and train have theirs in
test_critique_api.py and test_train.py), a torn last line on top, then rerun: complete output, no item
lost or duplicated, no torn line. And the store itself: a torn tail is cut before the next append."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import kill_at_random_moments
from critiquelab.io import Store, UserError, read_jsonl, write_jsonl

CLI = [sys.executable, "-m", "critiquelab.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def assert_clean_jsonl(path: Path) -> list[dict]:
    """Every line is a whole JSON object and the file ends with a newline (no torn line)."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), f"{path} ends with a torn line"
    return [json.loads(line) for line in raw.decode().splitlines()]


def test_store_cuts_a_torn_tail_before_appending(tmp_path):
    store = Store(tmp_path / "s.jsonl")
    store.append([{"key": "a", "v": 1}, {"key": "b", "v": 2}])
    with open(store.path, "ab") as f:
        f.write(b'{"key": "c", "v": ')  # a writer killed mid-line
    assert set(store.read()) == {"a", "b"}  # readers skip the fragment
    store.append([{"key": "c", "v": 3}])  # the writer cuts it first: the record never lands on it
    assert [r["key"] for r in assert_clean_jsonl(store.path)] == ["a", "b", "c"]
    store.append([{"key": "a", "v": 4}])  # latest record per key wins
    assert store.read()["a"]["v"] == 4 and len(store.rows()) == 4


def test_store_refuses_a_file_that_is_not_a_store(tmp_path):
    path = tmp_path / "mine.jsonl"
    write_jsonl(path, [{"id": 1, "question": "my data"}])
    before = path.read_bytes()
    with pytest.raises(UserError, match="not a critiquelab store"):
        Store(path).append([{"key": "x"}])
    assert path.read_bytes() == before
    one_line = tmp_path / "notes.jsonl"
    one_line.write_bytes(b'{"id": 1, "text": "no newline at the end"}')  # not a torn store record: kept
    with pytest.raises(UserError, match="not a critiquelab store"):
        Store(one_line).append([{"key": "x"}])
    assert one_line.read_bytes() == b'{"id": 1, "text": "no newline at the end"}'
    torn = Store(tmp_path / "torn.jsonl")  # a store killed while writing its first record
    torn.path.write_bytes(b'{"key": "a", "v": ')
    torn.append([{"key": "a", "v": 1}])
    assert assert_clean_jsonl(torn.path) == [{"key": "a", "v": 1}]


def test_sample_killed_at_random_moments_resumes_without_loss_or_duplicates(tiny_model, tiny_world, tmp_path):
    out = tmp_path / "solutions.jsonl"
    args = ["sample", "--problems", str(tiny_world / "train.jsonl"), "--model", str(tiny_model), "--out", str(out),
            "sample.n_problems=40", "sample.n_per_problem=2", "sample.batch_size=2", "sample.max_new_tokens=32"]
    partial = out.with_name(out.name + ".partial")
    landed = kill_at_random_moments(args, partial, 80, kills=3, seed=1)
    print(f"sample: {len(landed)} kills landed, at {landed} of 80 rows")
    assert landed and landed[0] < 80  # killed mid-run at least once
    r = subprocess.run([*CLI, *args], env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = assert_clean_jsonl(out)
    problems = [p["id"] for p in read_jsonl(tiny_world / "train.jsonl")[:40]]
    assert [row["id"] for row in rows] == [f"{p}-s{j}" for p in problems for j in range(2)]  # all, once, in order
    assert not partial.exists()
    again = subprocess.run([*CLI, *args], env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "already complete" in again.stdout and assert_clean_jsonl(out) == rows


def test_eval_killed_at_random_moments_resumes_without_loss_or_duplicates(tiny_model, tiny_world, tmp_path):
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny_model), "--world", str(tiny_world), "--benchmarks", "world", "--out",
            str(out), "eval.batch_size=2", "eval.max_new_tokens=40"]
    landed = kill_at_random_moments(args, out / "world.jsonl", 30, kills=3, seed=2)
    print(f"eval: {len(landed)} kills landed, at {landed} of 30 items")
    assert landed and landed[0] < 30
    r = subprocess.run([*CLI, *args], env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    items = assert_clean_jsonl(out / "world.jsonl")
    ids = [p["id"] for p in read_jsonl(tiny_world / "test.jsonl")]
    assert sorted(i["id"] for i in items) == sorted(ids)  # every item exactly once
    results = json.loads((out / "results.json").read_text())["benchmarks"]["world"]
    assert results["n"] == 30 and results["correct"] == sum(i["correct"] for i in items)


def test_judge_killed_at_random_moments_resumes_without_loss_or_duplicates(tiny_model, tiny_world, tmp_path):
    rows = read_jsonl(tiny_world / "validation.jsonl")[:20]
    sols = tmp_path / "solutions.jsonl"
    write_jsonl(sols, [{"id": p["id"], "question": p["question"], "solution": p["solution"]} for p in rows])
    out = tmp_path / "judge"
    args = ["judge", "--critic", str(tiny_model), "--solutions", str(sols), "--out", str(out),
            "critic.batch_size=2", "critic.max_new_tokens=40"]
    landed = kill_at_random_moments(args, out / "judgements.jsonl", 20, kills=3, seed=3)
    print(f"judge: {len(landed)} kills landed, at {landed} of 20 judgements")
    assert landed and landed[0] < 20
    r = subprocess.run([*CLI, *args], env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    judged = assert_clean_jsonl(out / "judgements.jsonl")
    assert sorted(j["id"] for j in judged) == sorted(p["id"] for p in rows)
    assert "judged 20 solutions" in r.stdout
