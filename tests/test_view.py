"""`critiquelab view`: what it extracts from each input kind (stage outputs on the tiny world), the
page's embedding and the output guard. The page in a browser: tests/test_view_browser.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import replace

import pytest

from conftest import checker_critiqued
from critiquelab.config import BuildConfig, CriticConfig, CritiqueConfig, EvalConfig
from critiquelab.critique import run_critique
from critiquelab.io import UserError, read_jsonl
from critiquelab.view import GENERATOR, collect, decode, pack, render, split_steps, unpack, write_view
from view_pages import PAYLOADS, payload_store, run_dir, two_teachers


def _rows(page, tab_id):
    tab = next(t for t in page.tabs if t["id"] == tab_id)
    return tab["rows"]


@pytest.fixture(scope="module")
def critiqued(tiny_world, tmp_path_factory):
    return two_teachers(tiny_world, tmp_path_factory.mktemp("view"), 15)


def test_steps_of_the_world_prmbench_and_free_text():
    world = split_steps("Step 1: 3 - 1 = 2\nStep 2: 2 * 3 = 6\nThe answer is \\boxed{6}.")
    assert world == {"pre": "", "steps": [[1, "3 - 1 = 2"], [2, "2 * 3 = 6"]], "post": "The answer is \\boxed{6}."}
    prm = split_steps("Step 1: Let p be\nthe price.\nStep 2: So $2p=0.58$.")
    assert prm["steps"] == [[1, "Let p be\nthe price."], [2, "So $2p=0.58$."]] and prm["post"] == ""
    free = split_steps("First we add.\n\nThen we double.\n\nSo the answer is 4.")
    assert free["steps"] == [[1, "First we add."], [2, "Then we double."]] and free["post"] == "So the answer is 4."
    assert split_steps("") == {"pre": "", "steps": [], "post": ""}
    assert split_steps("**Step 3:** odd start")["steps"] == [[3, "odd start"]]


def test_solutions_with_a_critique_store(critiqued):
    sols, store, _ = critiqued
    page = collect([sols, store.parent])
    rows = _rows(page, "critiques")
    solutions, critiques = read_jsonl(sols), {r["id"]: r for r in read_jsonl(store)}
    assert len(rows) == len(solutions) == 30
    for r in rows:
        s = page.solutions[r["s"]]
        src = next(x for x in solutions if x["id"] == s["id"])
        assert r["v"] == critiques[s["id"]]["verdict"] and r["c"] == critiques[s["id"]]["critique"]
        assert s["l"] is src["correct"] and s["fe"] == src["first_error_step"] and s["k"] == src["error_kind"]
        assert len(s["steps"]) == src["solution"].count("Step ")
        assert page.problems[s["p"]]["q"] == src["question"] and page.problems[s["p"]]["a"] == src["answer"]
        assert r["w"] == "checker" and r["p"] == "parsed"
        if r["v"] == "wrong":  # the checker blames the data's first wrong step
            assert r["n"] == src["first_error_step"]


def test_two_teachers_share_one_tab_and_each_solution(critiqued):
    sols, store, store2 = critiqued
    page = collect([sols, store, store2])
    rows = _rows(page, "critiques")
    assert len(rows) == 60 and {r["w"] for r in rows} == {"checker", "checker[recompute](noise=0.25,seed=0)"}
    per_solution = {}
    for r in rows:
        per_solution.setdefault(r["s"], []).append(r["w"])
    assert len(per_solution) == 30 and all(len(set(w)) == 2 for w in per_solution.values())
    # the noisy teacher disagrees with the reference grade on some verdicts, the exact one never
    disagree = {w: sum(r["v"] != ("right" if page.solutions[r["s"]]["l"] else "wrong") for r in rows if r["w"] == w)
                for w in {r["w"] for r in rows}}
    assert disagree["checker"] <= 2 and disagree["checker[recompute](noise=0.25,seed=0)"] > 0


def test_a_panel_store_names_each_teacher(critiqued, tmp_path):
    sols, _, _ = critiqued
    panel = CritiqueConfig(panel={"exact": {}, "noisy": {"checker_noise": 0.3}})
    run_critique(sols, tmp_path / "panel", panel)
    rows = _rows(collect([sols, tmp_path / "panel"]), "critiques")
    assert len(rows) == 60 and {r["w"] for r in rows} == {"exact", "noisy"}


def test_a_refine_store_with_its_critiques(critiqued, tmp_path):
    sols, store, _ = critiqued
    run_critique(sols, tmp_path / "refine", replace(CritiqueConfig(), prompt="refine_paper"), critiques=store)
    page = collect([sols, store, tmp_path / "refine"])
    rows = next(t for t in page.tabs if t["kind"] == "refine")["rows"]
    critiques = {r["id"]: r["critique"] for r in read_jsonl(store)}
    assert len(rows) == 30
    for r in rows:
        assert r["c"] == critiques[page.solutions[r["s"]]["id"]] and r["r"]
        assert r["rl"] is True  # the checker refines exactly: every refined answer grades right


def test_a_built_dataset_labelled_from_its_solutions(tiny_world, tmp_path):
    from critiquelab.build import run_build

    sols, store = checker_critiqued(tiny_world, tmp_path, 12)
    run_build(sols, store, tmp_path / "ds", BuildConfig(methods=["sft_noisy", "cft"], decontaminate=False))
    page = collect([tmp_path / "ds"])
    cft, sft = _rows(page, f"dataset/{tmp_path / 'ds' / 'cft.jsonl'}"), _rows(page, f"dataset/{tmp_path / 'ds' / 'sft_noisy.jsonl'}")
    solutions = {(r["question"], r["solution"]): r for r in read_jsonl(sols)}
    assert len(cft) == len(sft) == 12
    for r in cft:
        s = page.solutions[r["s"]]
        q = page.problems[s["p"]]["q"]
        src = next(x for (qq, _), x in solutions.items() if qq == q and x["id"] == s["id"])
        assert s["l"] is src["correct"] and r["v"] in ("right", "wrong") and r["c"].endswith("[END]")
        assert r["v"] == ("right" if src["correct"] else "wrong")
    assert all("c" not in r for r in sft)


def test_judge_eval_critic_and_eval_outputs(tiny_world, tiny_model, critiqued, tmp_path):
    from critiquelab.critic import judge, run_eval_critic
    from critiquelab.evaluate import run_eval

    sols = critiqued[0]
    cfg = CriticConfig(max_new_tokens=16)
    judge(tiny_model, sols, tmp_path / "judge", cfg)
    rows = _rows(collect([sols, tmp_path / "judge"]), f"critic/{tmp_path / 'judge'}")
    judged = {r["id"]: r for r in read_jsonl(tmp_path / "judge" / "judgements.jsonl")}
    assert len(rows) == 30 and all(r["c"] is not None for r in rows)
    page = collect([sols, tmp_path / "judge"])
    assert {page.solutions[r["s"]]["id"]: r["v"] for r in rows} == {k: v["verdict"] for k, v in judged.items()}

    run_eval_critic(tiny_model, sols, tmp_path / "critic", cfg)  # critic.json names the judged file
    page = collect([tmp_path / "critic"])
    rows = next(t for t in page.tabs if t["kind"] == "critic")["rows"]
    assert len(rows) == 30 and all(page.solutions[r["s"]]["l"] is not None for r in rows)

    run_eval(tiny_model, tmp_path / "eval", EvalConfig(limit=10, max_new_tokens=32), world_dir=tiny_world)
    page = collect([tmp_path / "eval", tiny_world / "test.jsonl"])
    rows = next(t for t in page.tabs if t["kind"] == "eval")["rows"]
    items = read_jsonl(tmp_path / "eval" / "world.jsonl")
    test = {r["id"]: r for r in read_jsonl(tiny_world / "test.jsonl")}
    assert len(rows) == 10
    for r, item in zip(rows, items, strict=True):
        s = page.solutions[r["s"]]
        assert s["l"] is item["correct"] and page.problems[s["p"]]["q"] == test[item["id"]]["question"]
        assert r["p"] == item["reason"] and (s["fe"] is None) == item["correct"]


def test_a_prmbench_eval_critic_output(tiny_model, tmp_path):
    from critiquelab.prmbench import run_prmbench
    from critiquelab.sources import benchmarks_dir

    if not (benchmarks_dir() / "prmbench").is_dir():
        pytest.skip("../shared/benchmarks/prmbench is not on this machine")
    run_prmbench(tiny_model, tmp_path / "prm", CriticConfig(max_new_tokens=8, benchmark_limit=1))
    page = collect([tmp_path / "prm"])
    rows = next(t for t in page.tabs if t["kind"] == "critic")["rows"]
    items = {r["id"]: r for r in read_jsonl(tmp_path / "prm" / "prmbench.jsonl")}
    assert len(rows) == 32 and page.tabs[0]["title"].endswith("on PRMBench")
    for r in rows:
        s = page.solutions[r["s"]]
        item = items[s["id"]]
        assert s["l"] is item["correct"] and s["fe"] == item["first_error_step"] and s["k"] == item["classification"]
        assert r["v"] == item["verdict"] and len(s["steps"]) >= (s["fe"] or 1)


def test_a_run_directory_and_the_reports_links(tiny_world, tiny_model, tmp_path):
    from critiquelab.report import write_report

    run = run_dir(tiny_world, tiny_model, tmp_path / "run")
    page = collect([run])
    assert [t["id"] for t in page.tabs] == ["critic/base", "eval/base/world", "critiques/default"]
    assert [len(t["rows"]) for t in page.tabs] == [16, 8, 10]
    write_report(run)
    # no page yet: no links to one, and both reports give the command that writes it
    hint = f"critiquelab view {run} --out {run / 'view.html'}"
    md, html_text = (run / "report.md").read_text(), (run / "report.html").read_text()
    assert 'href="view.html' not in html_text and "](view.html" not in md
    assert f"No sample page yet: `{hint}` writes one" in md and f"<code>{hint}</code>" in html_text
    assert f"then `critiquelab report {run}` links its cards" in md
    write_view([run], run / "view.html")
    write_report(run)
    html_text = (run / "report.html").read_text()
    assert "No sample page yet" not in html_text and "No sample page yet" not in (run / "report.md").read_text()
    assert '<a href="view.html#tab=eval/base/world">base (world)</a>' in html_text
    assert '<a href="view.html#tab=critic/base">base</a>' in html_text
    kinds = json.loads((run / "critic" / "base" / "critic.json").read_text())["metrics"]["recall_by_kind"]
    worst = min(kinds, key=lambda k: (kinds[k]["recall"], k))
    assert f'href="view.html#tab=critic/base&amp;kind={worst}&amp;label=wrong&amp;agree=disagree%2Cno+verdict"' \
        in html_text


def test_the_page_holds_its_data_as_base64_and_runs_only_its_own_script(critiqued, tmp_path):
    sols, store, _ = critiqued
    bad, _ = payload_store(sols, store, tmp_path / "bad")
    page = collect([sols, bad])
    text = render(page)
    assert GENERATOR in text[:400]
    assert decode(text) == json.loads(json.dumps(page.data()))
    for payload in PAYLOADS.values():  # no model text outside the base64 blob
        assert payload[:40] not in text
    assert "pwned" not in text and "<script>window" not in text
    script = re.search(r"<script>(.*?)</script>", text, re.S)[1]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    blocks = re.findall(r'<script (?:id="payload"|class="t") type="application/octet-stream">[A-Za-z0-9+/=]*</script>',
                        text)
    assert f"script-src 'sha256-{digest}'" in text and text.count("<script") == len(blocks) + 1  # data blocks and ours
    assert "connect-src" not in text and "default-src 'none'" in text  # nothing may be fetched


def test_the_texts_in_blocks_in_the_order_of_the_cards(critiqued):
    sols, store, store2 = critiqued
    page = collect([sols, store, store2])
    data = json.loads(json.dumps(page.data()))
    structure, chunks = pack(data, 500)
    assert unpack(structure, chunks) == data and decode(render(page, 500)) == data
    assert len(chunks) > 8 and structure["X"] == [sum(map(len, chunks[:k])) for k in range(len(chunks))]
    assert all(sum(map(len, c[:-1])) < 500 <= sum(map(len, c)) for c in chunks[:-1])  # about 500 characters each
    # the structure holds no text, only numbers; the first card's texts are the first ones
    assert "Conclusion:" not in json.dumps(structure) and "Conclusion:" in json.dumps(chunks)
    first = structure["T"][0]["rows"][0]
    sol = structure["S"][first["s"]]
    ids = [structure["P"][sol["p"]]["q"], *[i for _, i in sol["steps"]], sol["post"], first["c"]]
    assert sorted(i for i in ids if i is not None) == list(range(len([i for i in ids if i is not None])))
    texts = [t for c in chunks for t in c]
    assert texts[first["c"]] == data["T"][0]["rows"][0]["c"]


def test_bad_inputs_and_the_output_guard(critiqued, tmp_path, capsys):
    from critiquelab.cli import main

    sols, store, _ = critiqued
    out = tmp_path / "page.html"
    assert main(["view", str(tmp_path / "nope.jsonl"), "--out", str(out)]) == 2
    assert "nope.jsonl: not found" in capsys.readouterr().err and not out.exists()
    other = tmp_path / "other.jsonl"
    other.write_text('{"a": 1}\n')
    assert main(["view", str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "other.jsonl:1: not a file critiquelab writes" in err and len(err.strip().splitlines()) == 1
    assert main(["view", str(store), "--out", str(out)]) == 2  # critiques without their solutions
    assert "none of its 30 critiques is of a solution given" in capsys.readouterr().err
    mine = tmp_path / "mine.html"
    mine.write_text("<html>my notes</html>")
    assert main(["view", str(sols), str(store), "--out", str(mine)]) == 2
    assert "was not written by critiquelab view" in capsys.readouterr().err
    assert mine.read_text() == "<html>my notes</html>"
    assert main(["view", str(sols), str(store), "--out", str(out)]) == 0
    assert "view: " in capsys.readouterr().out and GENERATOR in out.read_text()
    first = out.read_text()
    assert main(["view", str(sols), "--out", str(out)]) == 0  # its own page is replaced
    assert out.read_text() != first and len(decode(out.read_text())["T"][0]["rows"]) == 30
    assert main(["view", str(sols), "--out", str(tmp_path)]) == 2  # a directory
    with pytest.raises(UserError, match="nothing to show|expected"):
        empty = tmp_path / "empty"
        empty.mkdir()
        collect([empty])
