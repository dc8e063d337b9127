"""A run's numbers: its cells, results, per-item tables, training logs and critics, read once
into a `Run`, with every interval and comparison the report shows (report.py renders them).

Statistics: a method's score on an item is its mean correctness over seeds; comparisons pair items
(each `compared` method of methods.py, e.g. CFT, the CFT+SFT mix and CGD, against every other method
of the same data setting and the base): the mean difference, a 95% bootstrap CI over items and a
two-sided sign-flip permutation p-value. CFT and CGD are also set against the best SFT variant of
their setting (`vs_best_sft`).
Critics are compared on the same judged solutions, clustered by problem (stats.py).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from critiquelab.io import UserError, check_rows, read_json, read_jsonl
from critiquelab.methods import TABLE, Method, kind_of, names
from critiquelab.stats import REPS, balanced_accuracy, bootstrap, sign_flip_p, weighted_mean

__all__ = ["GROUP", "Run", "vs_best_sft", "collect_runs", "comparisons", "critic_comparisons", "group_of",
           "item_table", "load_cells", "load_run", "method_rank", "paired_comparison", "seed_means"]

METHOD_ORDER = list(TABLE)  # methods.py: base, SFT, CFT, RL
RL = names("rl")
COMPARED = tuple(m.name for m in TABLE.values() if m.compared)  # the methods compared with the others of their setting
VS_BEST = tuple(m.name for m in TABLE.values() if m.vs_best_sft)  # ... and with the best SFT variant of it
GROUP = ("model", "source", "teacher", "data_size")   # a cell's setting; methods compare within one
SOLUTIONS = Method.loss_panel  # what a method's loss is on (a panel each in loss.png): solutions unless
LOSS_TASKS = {m.name: m.loss_panel for m in TABLE.values() if m.loss_panel != SOLUTIONS}  # methods.py says other


def method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else 99


def load_cells(run_dir: Path) -> list[dict]:
    """Cells with their attributes: `cells.json` of an experiment, else `eval/<method>-s<seed>` names."""
    if (run_dir / "cells.json").exists():
        cells = read_json(run_dir / "cells.json")
        if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
            raise UserError(f"{run_dir / 'cells.json'}: expected a JSON list of cells")
        check_rows(cells, run_dir / "cells.json", {"name": str, "method": str}, optional={"seed": int},
                   fix="is it an experiment's run directory?")
        return cells
    cells = [_plain_cell(d) for d in sorted(p for p in (run_dir / "eval").glob("*") if p.is_dir())]
    return _one_per_method(cells)


def _plain_cell(eval_dir: Path) -> dict:
    """A cell of a directory of plain `eval/<name>/` results. Its method is read from the records:
    the evaluated model (results.json) is a fine-tune whose train_log.json names its training set
    (`cft.jsonl`: cft), or a model critiquelab did not train: the base. Without those records the
    name says it (`cft-s0`), if it names a known method."""
    name = eval_dir.name
    method, _, seed = name.rpartition("-s")
    method, seed = (method, int(seed)) if seed.isdigit() else (name, None)
    cell = {"name": name, "method": method, "seed": seed, "model": None, "source": None, "teacher": None,
            "data_size": None, "status": "ok"}
    try:
        results = read_json(eval_dir / "results.json")
    except UserError:
        results = None  # (collect_runs names a broken results.json)
    model = results.get("model") if isinstance(results, dict) else None
    if isinstance(results, dict):
        cell["eval_settings"] = {"prompt": results.get("prompt"), **(results.get("sampling") or {})}
    if isinstance(model, str) and (data := _train_config(model).get("data")):
        cell.update(method=Path(data).stem, model_dir=str(Path(model).resolve()), recorded=True)
    elif isinstance(model, str) and (Path(model).is_dir() or re.fullmatch(r"[\w.-]+/[\w.-]+", model)):
        cell.update(method="base", recorded=True)  # a model critiquelab did not fine-tune (a dir or a hub name)
    if not cell.get("recorded") and cell["method"] not in METHOD_ORDER:
        cell.update(status="left_out", error=f"eval/{name}: neither its name nor its records (the model in "
                                                "results.json) say which method it is")
    return cell


def _train_config(model: str) -> dict:
    """The settings a model was fine-tuned with (its train_log.json); {} for one critiquelab did not train."""
    log = Path(model) / "train_log.json"
    stats = read_json(log) if log.is_file() else None
    return (stats.get("config") or {}) if isinstance(stats, dict) else {}


def _one_per_method(cells: list[dict]) -> list[dict]:
    """One evaluation per method and seed: of several (the base evaluated again with more tokens, say),
    the one evaluated with the settings most cells share is reported; the others are left out, named."""
    common = defaultdict(int)
    for c in cells:
        common[str(c.get("eval_settings"))] += 1
    by_key = defaultdict(list)
    for c in cells:
        if c["status"] == "ok":
            by_key[(c["method"], c["seed"])].append(c)
    for (method, _), same in by_key.items():
        same.sort(key=lambda c: (-common[str(c.get("eval_settings"))], c["name"] != method, c["name"]))
        for c in same[1:]:
            c.update(status="left_out", error=f"eval/{c['name']}: another evaluation of {method} (settings "
                                              f"{c.get('eval_settings')}); the tables use eval/{same[0]['name']}")
    return cells


def group_of(cell: dict) -> tuple:
    return tuple(cell.get(k) for k in GROUP)


def collect_runs(run_dir: Path, cells: list[dict]) -> list[dict]:
    runs = []
    for c in cells:
        if c.get("status", "ok") != "ok":  # pending, failed or skipped: results there may be partial or stale
            continue
        results = run_dir / "eval" / c["name"] / "results.json"
        if not results.exists():
            continue
        data = read_json(results)
        benches = data.get("benchmarks") if isinstance(data, dict) else None
        if not isinstance(benches, dict) or not all(isinstance(r, dict) for r in benches.values()):
            raise UserError(f"{results}: expected {{\"benchmarks\": {{name: {{accuracy, n, ci95, no_answer}}}}}} "
                            "(the results.json of `critiquelab eval`)")
        check_rows(list(benches.values()), results, {"accuracy": float, "n": int, "ci95": list, "no_answer": int},
                   fix="expected the results.json of `critiquelab eval`")
        for bench, r in benches.items():
            runs.append({"method": c["method"], "seed": c["seed"], "benchmark": bench, "accuracy": r["accuracy"],
                         "n": r["n"], "ci95": r["ci95"], "no_answer": r["no_answer"],
                         "format_failures": r["no_answer"] + r.get("fallback", 0) + r.get("several_answers", 0)
                         + r.get("option_text", 0),
                         **{k: c.get(k) for k in GROUP}, "cell": c["name"]})
    runs.sort(key=lambda r: (method_rank(r["method"]), r["method"], str(group_of(r)), r["seed"] or 0, r["benchmark"]))
    return runs


def item_table(run_dir: Path, cells: list[dict]) -> dict[tuple, list[dict[str, bool]]]:
    """(method, model, source, teacher, data_size, benchmark) -> one {item id: correct} map per seed."""
    items: dict[tuple, list[dict[str, bool]]] = defaultdict(list)
    for c in cells:
        if c.get("status", "ok") != "ok":
            continue
        for f in sorted((run_dir / "eval" / c["name"]).glob("*.jsonl")):
            rows = read_jsonl(f, tolerate_torn_tail=True)
            check_rows(rows, f, {"id": (str, int), "correct": bool}, fix="expected the items of `critiquelab eval`")
            items[(c["method"], *group_of(c), f.stem)].append({r["id"]: bool(r["correct"]) for r in rows})
    return items


def paired_comparison(a: list[float], b: list[float], *, reps: int = REPS, seed: int = 0) -> dict:
    """Per-item paired difference a - b: mean, bootstrap 95% CI over items, and a two-sided
    sign-flip permutation p-value (items are the unit; a and b are per-item mean correctness)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return {"delta": float(d.mean()), "ci95": bootstrap(lambda w: weighted_mean(d, w), len(d), reps=reps, seed=seed),
            "p_value": sign_flip_p(d, reps=reps, seed=seed), "n": len(d)}


def _seed_mean(per_seed: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Mean over resampled seeds: per_seed is seeds x reps, picks reps x seeds."""
    return np.take_along_axis(per_seed.T, picks, axis=1).mean(axis=1)


def seed_means(items: dict[tuple, list[dict[str, bool]]], reps: int = REPS, seed: int = 0) -> list[dict]:
    """Mean accuracy over seeds per method, data setting and benchmark, with a 95% bootstrap CI
    that resamples both seeds and items."""
    out = []
    for (method, model, source, teacher, size, bench), runs in items.items():
        common = sorted(set.intersection(*(set(r) for r in runs)))
        if not common:
            continue
        m = np.array([[r[i] for i in common] for r in runs], dtype=float)  # seeds x items
        ci = bootstrap(lambda w, picks, m=m: _seed_mean(weighted_mean(m, w), picks), m.shape[1], seeds=[m.shape[0]],
                       reps=reps, seed=seed)
        out.append({"method": method, "model": model, "source": source, "teacher": teacher, "data_size": size,
                    "benchmark": bench,
                    "seeds": m.shape[0], "n": m.shape[1], "mean_accuracy": float(m.mean()), "ci95": ci})
    return sorted(out, key=lambda r: (method_rank(r["method"]), str(r["model"]), str(r["source"]), str(r["teacher"]),
                                      -(r["data_size"] or 0), r["benchmark"]))


def comparisons(items: dict[tuple, list[dict[str, bool]]]) -> list[dict]:
    """CFT (and the CFT+SFT mix, and CGD) against every other method of the same setting, and its model's base;
    each RL method against the methods before it in METHOD_ORDER (base, SFT, CFT, earlier RL)."""
    out = []
    for (a, *group_a, bench), runs_a in sorted(items.items(), key=lambda kv: (method_rank(kv[0][0]), str(kv[0]))):
        if a not in COMPARED:
            continue
        for (b, *group_b, bench_b), runs_b in sorted(items.items(), key=lambda kv: (method_rank(kv[0][0]), str(kv[0]))):
            if bench_b != bench or b == a or group_b[0] != group_a[0] or (b != "base" and group_b != group_a) \
                    or (b in RL and method_rank(b) > method_rank(a)):
                continue
            common = sorted(set.intersection(*(set(r) for r in runs_a + runs_b)))
            if not common:
                continue
            score = lambda runs, i: sum(r[i] for r in runs) / len(runs)  # noqa: E731
            res = paired_comparison([score(runs_a, i) for i in common], [score(runs_b, i) for i in common])
            out.append({"a": a, "b": b, "benchmark": bench, **dict(zip(GROUP, group_a, strict=True)),
                        "seeds_a": len(runs_a), "seeds_b": len(runs_b), **res})
    return out


def critic_comparisons(run_dir: Path, cells: list[dict], reps: int = REPS, seed: int = 0) -> list[dict]:
    """Balanced verdict accuracy, paired: CFT and each RL method minus each method before it in
    METHOD_ORDER with a finished critic of the same model, on the same judged solutions. A method's
    balanced accuracy is the mean over its seeds (a missing verdict counts as a miss, as in the critic
    table); the 95% CI is a bootstrap over problems (a problem's solutions resampled together, the
    same for both methods) and over each method's seeds, as the accuracy table's CIs are."""
    many = len({c.get("model") for c in cells}) > 1
    hits: dict[tuple, list[dict]] = defaultdict(list)  # (model, method) -> per seed {id: verdict right}
    labels: dict = {}  # model -> {solution id: (correct, problem id)}
    for c in cells:
        f = run_dir / "critic" / c["name"] / "judgements.jsonl"
        if c.get("status", "ok") != "ok" or not (f.parent / "critic.json").is_file():  # only finished critics
            continue
        model = c.get("model")
        if model not in labels:
            sols = run_dir / "critic" / (f"solutions-{model}.jsonl" if many else "solutions.jsonl")
            labels[model] = {r.get("id"): (r["correct"], r.get("problem_id", r.get("id")))
                             for r in (read_jsonl(sols) if sols.is_file() else []) if isinstance(r.get("correct"), bool)}
        judged = read_jsonl(f)
        check_rows(judged, f, {"id": (str, int)}, optional={"verdict": str}, fix="expected the judgements of "
                   "`critiquelab eval-critic`")
        truth = labels[model]
        hits[(model, c["method"])].append({j["id"]: j.get("verdict") == ("right" if truth[j["id"]][0] else "wrong")
                                           for j in judged if j["id"] in truth})
    out = []
    for (model, a), runs_a in sorted(hits.items(), key=lambda kv: (str(kv[0][0]), method_rank(kv[0][1]))):
        if a not in COMPARED:
            continue
        for (model_b, b), runs_b in sorted(hits.items(), key=lambda kv: method_rank(kv[0][1])):
            if model_b != model or method_rank(b) >= method_rank(a):
                continue
            ids = sorted(set.intersection(*(set(r) for r in runs_a + runs_b)), key=str)
            y = np.array([labels[model][i][0] for i in ids], dtype=float)
            if not ids or y.min() == y.max():
                continue
            problems = [labels[model][i][1] for i in ids]
            h_a, h_b = (np.array([[r[i] for i in ids] for r in runs], dtype=float) for runs in (runs_a, runs_b))
            ci = bootstrap(lambda w, pa, pb, h_a=h_a, h_b=h_b, y=y: _seed_mean(balanced_accuracy(h_a, y, w), pa)
                           - _seed_mean(balanced_accuracy(h_b, y, w), pb), len(ids), clusters=problems,
                           seeds=[len(runs_a), len(runs_b)], reps=reps, seed=seed)  # the same draws for every pair
            ba_a, ba_b = float(np.mean(balanced_accuracy(h_a, y))), float(np.mean(balanced_accuracy(h_b, y)))
            out.append({"model": model, "a": a, "b": b, "seeds_a": len(runs_a), "seeds_b": len(runs_b),
                        "n": len(ids), "problems": len(set(problems)), "balanced_accuracy_a": ba_a,
                        "balanced_accuracy_b": ba_b, "delta": ba_a - ba_b,
                        "ci95": ci})
    return out


def vs_best_sft(cells: list[dict], comps: list[dict], summary: list[dict], models: dict) -> list[dict]:
    """Per method of VS_BEST (CFT, CGD), setting and benchmark: the method minus the best SFT variant,
    the paired comparison of the two from `comparisons`. The best SFT is the one with the highest mean
    validation accuracy over seeds (the checkpoint-selection score, never the test split); without
    validation scores it is the best on the benchmark itself, which favours SFT, and the row says so."""
    val = defaultdict(list)
    for c in cells:
        if c.get("validation_accuracy") is not None:
            val[(c["method"], group_of(c))].append(c["validation_accuracy"])
    vs_sft = defaultdict(list)  # (method, setting, benchmark) -> its comparisons with each SFT variant
    for c in comps:
        if c["a"] in VS_BEST and kind_of(c["b"]) == "sft":
            vs_sft[(c["a"], tuple(c[k] for k in GROUP), c["benchmark"])].append(c)
    out = []
    for (method, group, bench), rows in sorted(vs_sft.items(), key=lambda kv: method_rank(kv[0][0])):
        on_val = all(val.get((c["b"], group)) for c in rows)
        test_mean = {r["method"]: r["mean_accuracy"] for r in summary if r["benchmark"] == bench and group_of(r) == group}
        score = {c["b"]: sum(val[(c["b"], group)]) / len(val[(c["b"], group)]) if on_val else test_mean.get(c["b"], 0.0)
                 for c in rows}
        best = max(rows, key=lambda c: (score[c["b"]], -method_rank(c["b"])))
        info = models.get(group[0]) or {}
        base = next((r["mean_accuracy"] for r in summary if r["method"] == "base" and r["model"] == group[0]
                     and r["benchmark"] == bench), None)
        out.append({"method": method, **dict(zip(GROUP, group, strict=True)), "benchmark": bench, "best_sft": best["b"],
                    "chosen_on": "validation" if on_val else "test (favours SFT)", "params": info.get("params"),
                    "critique_share": info.get("critique_share"), "base_accuracy": base,
                    "seeds": min(best["seeds_a"], best["seeds_b"]),
                    **{k: best[k] for k in ("delta", "ci95", "p_value", "n")}})
    return out


HELD_OUT = "problems (held out)"  # after the split: validation, or test (critic.split)


def _judged(record: dict, cells_file: bool) -> str:
    """Which solutions a critic judged, from its critic.json: an experiment's critic stage samples
    validation problems; otherwise the judged file, checked against the critic's training set."""
    path = record.get("solutions")
    if cells_file and (path is None or re.search(r"critic/solutions[^/]*\.jsonl$", path)):
        return f"{(record.get('config') or {}).get('split') or 'validation'} {HELD_OUT}"
    if not path:
        return "not recorded"
    if not Path(path).is_file():
        return f"{path} (not at hand)"
    questions = {r.get("question") for r in read_jsonl(path, tolerate_torn_tail=True)}
    data = _train_config(str(record.get("critic"))).get("data")
    if not data or not Path(data).is_file():
        return f"{path} (not checked against the critic's training set)"
    prompts = [m.get("content", "") for r in read_jsonl(data, tolerate_torn_tail=True)
               for m in r.get("prompt", []) if isinstance(m, dict)]
    seen = sum(any(q and q in p for p in prompts) for q in questions)
    return (f"{path}: {seen} of {len(questions)} questions are in the critic's training set (not held out)"
            if seen else f"{path} (held out: none of its {len(questions)} questions is in the critic's training set)")


@dataclass
class Run:
    """A run's results, loaded and computed once; every section reads from it (`report` is report.json)."""
    run_dir: Path
    cells: list[dict]
    runs: list[dict]
    manifest: dict
    trained: list[dict]
    main: tuple
    benches: list[str]
    summary: list[dict]
    comps: list[dict]
    report: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    budgets: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)  # task -> method -> loss curves of the main setting
    length_grouped: bool = False
    selection: dict = field(default_factory=dict)
    selection_axis: str = "step"
    rl_logs: dict = field(default_factory=dict)
    critics: list[dict] = field(default_factory=list)
    critic_comps: list[dict] = field(default_factory=list)
    sizes: list = field(default_factory=list)
    by_size: list[dict] = field(default_factory=list)
    vs_best: list[dict] = field(default_factory=list)
    regime: list[dict] = field(default_factory=list)

    def in_main(self, r: dict) -> bool:
        return group_of(r) == self.main or (r["method"] == "base" and r["model"] == self.main[0])

    @property
    def done(self) -> list[dict]:
        """The fine-tunes with results (a run split over machines may lack some)."""
        evaluated = {r["cell"] for r in self.runs}
        return [c for c in self.trained if c["name"] in evaluated]


def load_run(run_dir: Path) -> Run:
    """Read a run's records (cells, results, items, training logs, critics) and compute every table's numbers."""
    cells = load_cells(run_dir)
    runs = collect_runs(run_dir, cells)
    if not runs:
        raise UserError(f"{run_dir}: not a critiquelab run: no evaluation results to report (eval/<name>/results.json "
                        "from `critiquelab eval`, or an experiment's run directory)")
    manifest = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").exists() else {}
    items = item_table(run_dir, cells)
    trained = [c for c in cells if c["method"] != "base" and c.get("status") != "left_out"]
    evaluated = {r["cell"] for r in runs}
    done = [c for c in trained if c["name"] in evaluated]
    main = group_of(done[0]) if done else (runs[0]["model"], None, None, None)  # no fine-tune finished: the base
    summary = seed_means(items)
    d = Run(run_dir, cells, runs, manifest.get("manifest", {}), trained, main,
            sorted({r["benchmark"] for r in runs}, key=lambda b: (b != "world", b)), summary,
            sorted(comparisons(items), key=lambda c: tuple(c[k] for k in GROUP) != main))  # main setting first
    _load_training(d)
    d.critics = _load_critics(run_dir, cells)
    d.sizes = sorted({c["data_size"] for c in trained if c["data_size"] is not None})
    d.by_size = [r for r in summary if r["method"] != "base" and (r["model"], r["source"], r["teacher"]) == main[:3]
                 and r["data_size"] is not None] if len(d.sizes) > 1 else []
    d.vs_best = vs_best_sft(cells, d.comps, summary, d.manifest.get("models") or {})
    d.regime = read_json(run_dir / "regime.json") if (run_dir / "regime.json").is_file() else []
    d.critic_comps = critic_comparisons(run_dir, cells)
    d.report = {"runs": runs, "summary": summary, "comparisons": d.comps, "by_data_size": d.by_size,
                "critics": d.critics, "critic_comparisons": d.critic_comps,
                "rl": {name: {k: v for k, v in r.items() if k != "config"} for name, r in d.rl_logs.items()},
                "vs_best_sft": d.vs_best,  # and CFT's rows alone under the key earlier reports used:
                "cft_vs_best_sft": [r for r in d.vs_best if r["method"] == "cft"],
                "regime": d.regime, "training": d.training, "cells": cells,
                "main_group": dict(zip(GROUP, main, strict=True)), "manifest": d.manifest,
                "timings": manifest.get("timings", {})}
    return d


def _load_training(d: Run) -> None:
    """The fine-tunes' train_log.json: the training table, loss and selection curves, budgets, RL logs."""
    curves, selection = defaultdict(lambda: defaultdict(list)), defaultdict(list)
    for c in d.trained:
        log = d.run_dir / c.get("model_dir", f"models/{c['name']}") / "train_log.json"
        if not log.exists():
            continue
        stats = read_json(log)
        if c["method"] in RL:
            check_rows([stats] if isinstance(stats, dict) else [{}], log, {"curve": list, "compute": dict, "steps": int},
                       fix="expected the train_log.json of `critiquelab rl`")
            d.rl_logs[c["name"]] = {**stats, "method": c["method"], "main": group_of(c) == d.main}
            continue
        check_rows([stats] if isinstance(stats, dict) else [{}], log,
                   {"loss_curve": list, "examples": int, "tokens": int, "steps": int, "tokens_per_s": (int, float)},
                   optional={"train_loss": float}, fix="expected the train_log.json of `critiquelab train`")
        if not all(isinstance(p, dict) and isinstance(p.get("loss"), (int, float)) for p in stats["loss_curve"]):
            raise UserError(f"{log}: every loss_curve entry needs a 'loss' number (the train_log.json of "
                            "`critiquelab train`)")
        config = stats.get("config") or {}
        main = group_of(c) == d.main
        if main:
            d.budgets[c["name"]] = {"tokens": stats["tokens"], **{k: config.get(k) for k in ("token_budget", "model")}}
        d.training[c["name"]] = {k: v for k, v in stats.items() if k not in ("loss_curve", "config")}
        d.training[c["name"]]["last_loss"] = stats["loss_curve"][-1]["loss"] if stats["loss_curve"] else None
        if main and stats["loss_curve"]:
            curves[LOSS_TASKS.get(c["method"], SOLUTIONS)][c["method"]].append(stats["loss_curve"])
            d.length_grouped |= bool(config.get("group_by_length") and not config.get("packing"))
        if main and (stats.get("selection") or {}).get("all"):
            per_epoch = config.get("save_epochs") and stats.get("planned_steps")
            steps_per_epoch = stats["planned_steps"] / max(config.get("epochs") or 1, 1e-9) if per_epoch else None
            selection[c["method"]].append([(int(k.split("-")[1]) / steps_per_epoch if steps_per_epoch
                                            else int(k.split("-")[1]), v) for k, v in stats["selection"]["all"].items()])
            d.selection_axis = "epoch" if steps_per_epoch else "step"
    d.curves = dict(sorted(curves.items(), key=lambda kv: kv[0] != SOLUTIONS))
    d.selection = dict(selection)


def _load_critics(run_dir: Path, cells: list[dict]) -> list[dict]:
    critics = []
    for c in cells:
        f = run_dir / "critic" / c["name"] / "critic.json"
        if f.exists():
            r = read_json(f)
            fix = "expected the critic.json of `critiquelab eval-critic`"
            check_rows([r] if isinstance(r, dict) else [{}], f, {"metrics": dict}, optional={"best_of_n": dict}, fix=fix)
            check_rows([r["metrics"]], f, {"n": int, "accuracy": float, "balanced_accuracy": float,
                                           "balanced_accuracy_ci95": list, "wrong_f1": float,
                                           "unparseable_rate": float}, fix=fix)
            critics.append({"method": c["method"], "seed": c["seed"], "model": c.get("model"), "cell": c["name"],
                            **r["metrics"],
                            "judged": _judged(r, cells_file=(run_dir / "cells.json").is_file()),
                            "best_of_n": r.get("best_of_n"),
                            "plot": str(f.parent.relative_to(run_dir) / "best_of_n.png") if r.get("best_of_n") else None})
    return critics
