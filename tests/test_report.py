import pytest

from critiquelab.report import paired_comparison


def test_paired_comparison_identical_runs_show_no_effect():
    a = [1, 0, 1, 1, 0] * 20
    res = paired_comparison(a, a)
    assert res["delta"] == 0 and res["ci95"] == [0.0, 0.0] and res["p_value"] == 1.0


def test_paired_comparison_detects_a_clear_difference():
    a = [1] * 60 + [0] * 40
    b = [1] * 30 + [0] * 70  # a solves 30 more items, never fewer
    res = paired_comparison(a, b)
    assert res["delta"] == pytest.approx(0.30)
    assert res["ci95"][0] > 0.15 and res["ci95"][1] < 0.45
    assert res["p_value"] < 0.001 and res["n"] == 100


def test_paired_comparison_small_difference_is_not_significant():
    a = [1, 0] * 50
    b = a[:]
    b[0] = 0  # one item
    assert paired_comparison(a, b)["p_value"] > 0.5


def test_seed_means_pool_seeds_and_items(tmp_path):
    from critiquelab.io import write_jsonl
    from critiquelab.report import item_table, load_cells, seed_means

    for seed, pattern in enumerate([[1, 1, 0, 0], [1, 0, 0, 0]]):
        write_jsonl(tmp_path / "eval" / f"cft-s{seed}" / "world.jsonl",
                    [{"id": f"q{i}", "correct": bool(c)} for i, c in enumerate(pattern * 25)])
    (res,) = seed_means(item_table(tmp_path, load_cells(tmp_path)))
    assert (res["method"], res["seeds"], res["n"]) == ("cft", 2, 100)
    assert res["mean_accuracy"] == pytest.approx(0.375)
    assert res["ci95"][0] < 0.375 < res["ci95"][1]
