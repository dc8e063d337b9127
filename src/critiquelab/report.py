"""Report: the paper-style table with intervals, paired tests, plots, training curves, provenance.

Input: a run directory (`eval/<cell>/`, `models/<cell>/train_log.json`, `critic/<cell>/`,
`cells.json` and `manifest.json` from an experiment; a directory of plain `eval/<name>/` results
works too). Outputs:
- `report.json`: `runs: [{method, seed, benchmark, accuracy, n, ci95, source, teacher, data_size}]`,
  `summary` (mean over seeds with a seed x item bootstrap CI), `comparisons: [{a, b, benchmark,
  delta, ci95, p_value, n, ...}]`, `by_data_size`, `critics`, `training`, `cells`, `manifest`, `timings`;
- `report.md` and a self-contained `report.html` (the same content, PNGs embedded);
- `accuracy.png`, `data_size.png` (with several data sizes), `loss.png`, `selection.png` (the validation
  accuracy of every checkpoint: the selection curve, per step or, with `train.save_epochs`, per epoch).

Statistics: a method's score on an item is its mean correctness over seeds; comparisons pair items
(CFT and the CFT+SFT mix against every other method of the same data setting and the base): the
mean difference, a 95% bootstrap CI over items and a two-sided sign-flip permutation p-value.

    critiquelab report runs/demo
"""

from __future__ import annotations

import base64
import html
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from critiquelab import plots
from critiquelab.io import (
    UserError,
    atomic_write,
    check_output_dir,
    check_rows,
    mark_complete,
    output_dir,
    read_json,
    read_jsonl,
    read_marker,
    stable_hash,
    write_json,
)
from critiquelab.methods import TABLE, Method, kind_of, names
from critiquelab.stats import REPS, balanced_accuracy, bootstrap, sign_flip_p, weighted_mean

__all__ = ["check_publish", "collect_runs", "comparisons", "item_table", "load_cells", "paired_comparison", "publish",
           "seed_means", "summary_line", "write_report"]

METHOD_ORDER = list(TABLE)  # methods.py: base, SFT, CFT, RL
COLORS = {m.name: m.color for m in TABLE.values()}
RL = names("rl")
COMPARED = tuple(m.name for m in TABLE.values() if m.compared)  # the methods compared with the others of their setting
GROUP = ("model", "source", "teacher", "data_size")   # a cell's setting; methods compare within one
STYLE = {"order": METHOD_ORDER, "colors": COLORS}  # the plots' method order and colours
SOLUTIONS = Method.loss_panel  # what a method's loss is on (a panel each in loss.png): solutions unless
LOSS_TASKS = {m.name: m.loss_panel for m in TABLE.values() if m.loss_panel != SOLUTIONS}  # methods.py says other


def _order(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else 99


# ---------------------------------------------------------------------------------------------
# Reading results


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


def _group(cell: dict) -> tuple:
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
                         "format_failures": r["no_answer"] + r.get("fallback", 0),
                         **{k: c.get(k) for k in GROUP}, "cell": c["name"]})
    runs.sort(key=lambda r: (_order(r["method"]), r["method"], str(_group(r)), r["seed"] or 0, r["benchmark"]))
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
            items[(c["method"], *_group(c), f.stem)].append({r["id"]: bool(r["correct"]) for r in rows})
    return items


# ---------------------------------------------------------------------------------------------
# Statistics


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
    return sorted(out, key=lambda r: (_order(r["method"]), str(r["model"]), str(r["source"]), str(r["teacher"]),
                                      -(r["data_size"] or 0), r["benchmark"]))


def comparisons(items: dict[tuple, list[dict[str, bool]]]) -> list[dict]:
    """CFT (and the CFT+SFT mix) against every other method of the same setting, and its model's base;
    each RL method against the methods before it in METHOD_ORDER (base, SFT, CFT, earlier RL)."""
    out = []
    for (a, *group_a, bench), runs_a in sorted(items.items(), key=lambda kv: (_order(kv[0][0]), str(kv[0]))):
        if a not in COMPARED:
            continue
        for (b, *group_b, bench_b), runs_b in sorted(items.items(), key=lambda kv: (_order(kv[0][0]), str(kv[0]))):
            if bench_b != bench or b == a or group_b[0] != group_a[0] or (b != "base" and group_b != group_a) \
                    or (b in RL and _order(b) > _order(a)):
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
    for (model, a), runs_a in sorted(hits.items(), key=lambda kv: (str(kv[0][0]), _order(kv[0][1]))):
        if a not in COMPARED:
            continue
        for (model_b, b), runs_b in sorted(hits.items(), key=lambda kv: _order(kv[0][1])):
            if model_b != model or _order(b) >= _order(a):
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


def cft_vs_best_sft(cells: list[dict], comps: list[dict], summary: list[dict], models: dict) -> list[dict]:
    """Per setting and benchmark: CFT minus the best SFT variant, the paired comparison of the two from
    `comparisons`. The best SFT is the one with the highest mean validation accuracy over seeds (the
    checkpoint-selection score, never the test split); without validation scores it is the best on the
    benchmark itself, which favours SFT, and the row says so."""
    val = defaultdict(list)
    for c in cells:
        if c.get("validation_accuracy") is not None:
            val[(c["method"], _group(c))].append(c["validation_accuracy"])
    vs_sft = defaultdict(list)  # (setting, benchmark) -> CFT's comparisons with each SFT variant
    for c in comps:
        if c["a"] == "cft" and kind_of(c["b"]) == "sft":
            vs_sft[(tuple(c[k] for k in GROUP), c["benchmark"])].append(c)
    out = []
    for (group, bench), rows in vs_sft.items():
        on_val = all(val.get((c["b"], group)) for c in rows)
        test_mean = {r["method"]: r["mean_accuracy"] for r in summary if r["benchmark"] == bench and _group(r) == group}
        score = {c["b"]: sum(val[(c["b"], group)]) / len(val[(c["b"], group)]) if on_val else test_mean.get(c["b"], 0.0)
                 for c in rows}
        best = max(rows, key=lambda c: (score[c["b"]], -_order(c["b"])))
        info = models.get(group[0]) or {}
        base = next((r["mean_accuracy"] for r in summary if r["method"] == "base" and r["model"] == group[0]
                     and r["benchmark"] == bench), None)
        out.append({**dict(zip(GROUP, group, strict=True)), "benchmark": bench, "best_sft": best["b"],
                    "chosen_on": "validation" if on_val else "test (favours SFT)", "params": info.get("params"),
                    "critique_share": info.get("critique_share"), "base_accuracy": base,
                    "seeds": min(best["seeds_a"], best["seeds_b"]),
                    **{k: best[k] for k in ("delta", "ci95", "p_value", "n")}})
    return out


def _rl_blocks(logs: dict[str, dict], training: dict[str, dict], run_dir: Path) -> list[tuple]:
    """The RL cells: compute (generated + trained tokens, beside the SFT cells' trained tokens), the
    reward and the verdicts' balance early and late, and the reward curves of the main setting."""
    def mean(log: dict, key: str, last: bool) -> str:
        vals = [p[key] for p in log["curve"] if p.get(key) is not None]
        part = vals[-10:] if last else vals[:10]
        return f"{sum(part) / len(part):.2f}" if part else "-"

    rows = [[name, log["method"], log["steps"], log["compute"]["generated_tokens"], log["compute"]["trained_tokens"],
             log["compute"]["total_tokens"], mean(log, "reward", False), mean(log, "reward", True),
             mean(log, "verdict_right_share", True), mean(log, "no_verdict_share", True)]
            for name, log in sorted(logs.items(), key=lambda kv: (_order(kv[1]["method"]), kv[0]))]
    sft_tokens = sorted({t["tokens"] for t in training.values()})
    blocks: list[tuple] = [
        ("h", 2, "Critique RL"),
        ("p", "Compute is matched as generated + trained tokens: an RL cell stops once the tokens it generated plus "
              "the tokens it trained on (every completion with its prompt) reach the token budget, which is what an "
              "SFT or CFT cell trains on"
              + (f" ({', '.join(str(t) for t in sft_tokens)} tokens trained here)" if sft_tokens else "")
              + "; cft_crl adds its RL budget to its CFT cell's. Rewards: a critique scores 1 when its verdict matches "
                "the solution's reference grade (0 without a verdict), a solution 1 when its answer is right; the pool "
                "is balanced 1:1, so a constant verdict scores 0.5."),
        ("table", ["cell", "method", "steps", "generated tokens", "trained tokens", "total", "reward (first 10 steps)",
                   "reward (last 10)", 'says "right" (last 10)', "no verdict (last 10)"], rows)]
    main = {n: log for n, log in logs.items() if log["main"]}
    if main:
        plots.rewards(main, run_dir / "rl_rewards.png", **STYLE)
        blocks.append(("img", "rl_rewards.png", "critique RL rewards"))
    return blocks


# ---------------------------------------------------------------------------------------------
# Documents: a list of blocks rendered to Markdown and to self-contained HTML


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(ci: list[float], signed: bool = False) -> str:
    f = "{:+.1f}" if signed else "{:.1f}"
    return f"[{f.format(100 * ci[0])}, {f.format(100 * ci[1])}]"


def _markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *args in blocks:
        if kind == "h":
            out += ["#" * args[0] + " " + args[1], ""]
        elif kind == "p":
            out += [args[0], ""]
        elif kind == "table":
            header, rows = args
            out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]
        elif kind == "img":
            out += [f"![{args[1]}]({args[0]})", ""]
    return "\n".join(out)


def _html(blocks: list[tuple], run_dir: Path, title: str) -> str:
    def inline(text: str) -> str:
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))

    body = []
    for kind, *args in blocks:
        if kind == "h":
            body.append(f"<h{args[0]}>{inline(args[1])}</h{args[0]}>")
        elif kind == "p":
            body.append(f"<p>{inline(args[0])}</p>")
        elif kind == "table":
            header, rows = args
            body.append("<table><tr>" + "".join(f"<th>{inline(h)}</th>" for h in header) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{inline(str(c))}</td>" for c in row) + "</tr>"
                                  for row in rows) + "</table>")
        elif kind == "img":
            data = base64.b64encode((run_dir / args[0]).read_bytes()).decode()
            body.append(f'<p><img alt="{html.escape(args[1])}" src="data:image/png;base64,{data}"></p>')
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;"
             "font-size:13px;text-align:left}th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# ---------------------------------------------------------------------------------------------
# The report


def _label(group: tuple) -> str:
    model, source, teacher, size = group
    parts = [f"model {model}" if model not in (None, "default") else "",
             f"source {source}" if source not in (None, "default") else "",
             f"teacher {teacher}" if teacher not in (None, "default") else "", f"{size} questions" if size else ""]
    return ", ".join(p for p in parts if p) or "all"


REPORT_FILES = ("report.md", "report.html", "report.json", "accuracy.png", "data_size.png", "loss.png",
                "selection.png", "size_axis.png")

# The paper's data regime (Wang, Yue, Chen 2025; ../shared/PAPER.md), beside the run's in the report.
PAPER_REGIME = {
    "base": "20-55% on its benchmarks (three 7B bases)",
    "right": "56% right / 44% wrong (teacher's verdicts on WebInstruct answers)",
    "cft_wrong": "44% 'wrong'",
    "written_by": "WebInstruct answers mined from the web (other models and people), not the student",
    "teacher_error": "at least 20% of GPT-4o's critiques wrong (authors' estimate)",
    "corrections": "usually: critiques of wrong answers carry the corrected reasoning",
    "size": "50K questions, 1 epoch (~98 steps of 512)",
}


def _regime_blocks(regime: list[dict], summary: list[dict], model, bench: str) -> list[tuple]:
    """The paper's data regime beside this run's, one column per data setting of the main model."""
    base = next((r["mean_accuracy"] for r in summary if r["method"] == "base" and r["model"] == model
                 and r["benchmark"] == bench), None)
    p = lambda x: "-" if x is None else f"{_pct(x)}%"  # noqa: E731
    cols = [[f"{p(base)} on {bench}",
             "-" if g["share_right"] is None else f"{p(g['share_right'])} right / {p(1 - g['share_right'])} wrong",
             f"{p(g['cft_share_wrong'])} 'wrong' of {g['cft_examples']} examples", g["written_by"],
             f"{p(g['teacher_error_rate'])} ({g['teacher']})",
             f"{p(g['corrections_in_wrong_critiques'])} of 'wrong' critiques carry a correction",
             f"{g['questions']} questions, {g['token_budget']:,} training tokens per method"] for g in regime]
    keys = ["base", "right", "cft_wrong", "written_by", "teacher_error", "corrections", "size"]
    names = ["base accuracy", "noisy solutions", "CFT data verdicts", "noisy solutions written by",
             "teacher error rate", "corrections in critiques", "data size and token budget"]
    header = ["", "paper", *[_label((None, g["source"], g["teacher"], g["data_size"])) or "this run" for g in regime]]
    return [("h", 2, "Data regime: the paper vs this run"),
            ("p", "Measured from this run's files: the noisy solutions' reference grades, the teacher's verdicts "
                  "against them (its error rate), the critiques' text and the built CFT set."),
            ("table", header, [[n, PAPER_REGIME[k], *[c[i] for c in cols]] for i, (k, n) in enumerate(zip(keys, names,
                                                                                                      strict=True))])]


def _base_models(models: dict) -> str:
    """Where each model's base is: given, or pretrained on the world and kept in the cache."""
    parts = [f"{'' if name == 'default' else name + ': '}`{info.get('base')}`"
             + ("" if info.get("pretrain") is None else " (pretrained on the world, kept in the cache)")
             for name, info in models.items()]
    cached = any(info.get("pretrain") is not None for info in models.values())
    return ("Base model" + ("s: " if len(parts) > 1 else ": ") + "; ".join(parts)
            + (". The cache is `CRITIQUELAB_CACHE` (default ~/.cache/critiquelab); give a cached base to the stage "
               "commands as `--model`." if cached else "."))


def _compute_claim(cells: list[dict], budgets: dict[str, dict]) -> str:
    """What the fine-tunes' own train_log.json say about their start and their tokens: the same base
    and token budget only when every one of them records it; a difference is said; nothing unverified."""
    logs = [budgets[c["name"]] for c in cells if c["name"] in budgets]
    if not logs or len(logs) < len(cells):
        return ""
    same_base = len({b["model"] for b in logs}) == 1 and logs[0]["model"] is not None
    budget = {b["token_budget"] for b in logs}
    if len(budget) == 1 and (b := budget.pop()) is not None and b > 0:
        return ("every fine-tune starts from the same base with the same token budget; " if same_base else
                "every fine-tune trains on the same token budget (from different start models); ")
    tokens = sorted(b["tokens"] for b in logs)
    if len(logs) > 1 and tokens[0] != tokens[-1]:
        return (f"the fine-tunes trained on different numbers of tokens ({tokens[0]:,} to {tokens[-1]:,}; their "
                "train_log.json), so a difference between methods is also one of compute; ")
    return ""


HELD_OUT = "validation problems (held out)"


def _judged(record: dict, cells_file: bool) -> str:
    """Which solutions a critic judged, from its critic.json: an experiment's critic stage samples
    validation problems; otherwise the judged file, checked against the critic's training set."""
    path = record.get("solutions")
    if cells_file and (path is None or re.search(r"critic/solutions[^/]*\.jsonl$", path)):
        return HELD_OUT
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


def _check_report_files(run_dir: Path) -> None:
    """In a directory critiquelab did not make (no marker: say, one the user filled with eval
    outputs), never replace a file of the report's names that it did not write itself."""
    if read_marker(run_dir) is not None:
        return
    present = [n for n in REPORT_FILES if (run_dir / n).exists()]
    if present and not _our_report(run_dir):
        raise UserError(f"{run_dir}: writing the report would replace {', '.join(present)}, which critiquelab did "
                        "not write; move them away or report a run directory critiquelab made")


def _our_report(run_dir: Path) -> bool:
    """The report files there are critiquelab's: its report.json names the report's keys (the
    others are written beside it)."""
    try:
        return {"runs", "summary", "comparisons"} <= set(read_json(run_dir / "report.json"))
    except (UserError, TypeError):
        return False


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
        return _group(r) == self.main or (r["method"] == "base" and r["model"] == self.main[0])

    @property
    def done(self) -> list[dict]:
        """The fine-tunes with results (a run split over machines may lack some)."""
        evaluated = {r["cell"] for r in self.runs}
        return [c for c in self.trained if c["name"] in evaluated]


def _checked_run_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError(f"{run_dir}: run directory not found")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a directory (give the run directory of an experiment or one holding "
                        "eval/<name>/results.json)")
    _check_report_files(run_dir)
    return run_dir


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
    main = _group(done[0]) if done else (runs[0]["model"], None, None, None)  # no fine-tune finished: the base
    summary = seed_means(items)
    d = Run(run_dir, cells, runs, manifest.get("manifest", {}), trained, main,
            sorted({r["benchmark"] for r in runs}, key=lambda b: (b != "world", b)), summary,
            sorted(comparisons(items), key=lambda c: tuple(c[k] for k in GROUP) != main))  # main setting first
    _load_training(d)
    d.critics = _load_critics(run_dir, cells)
    d.sizes = sorted({c["data_size"] for c in trained if c["data_size"] is not None})
    d.by_size = [r for r in summary if r["method"] != "base" and (r["model"], r["source"], r["teacher"]) == main[:3]
                 and r["data_size"] is not None] if len(d.sizes) > 1 else []
    d.vs_best = cft_vs_best_sft(cells, d.comps, summary, d.manifest.get("models") or {})
    d.regime = read_json(run_dir / "regime.json") if (run_dir / "regime.json").is_file() else []
    d.critic_comps = critic_comparisons(run_dir, cells)
    d.report = {"runs": runs, "summary": summary, "comparisons": d.comps, "by_data_size": d.by_size,
                "critics": d.critics, "critic_comparisons": d.critic_comps,
                "rl": {name: {k: v for k, v in r.items() if k != "config"} for name, r in d.rl_logs.items()},
                "cft_vs_best_sft": d.vs_best, "regime": d.regime, "training": d.training, "cells": cells,
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
            d.rl_logs[c["name"]] = {**stats, "method": c["method"], "main": _group(c) == d.main}
            continue
        check_rows([stats] if isinstance(stats, dict) else [{}], log,
                   {"loss_curve": list, "examples": int, "tokens": int, "steps": int, "tokens_per_s": (int, float)},
                   optional={"train_loss": float}, fix="expected the train_log.json of `critiquelab train`")
        if not all(isinstance(p, dict) and isinstance(p.get("loss"), (int, float)) for p in stats["loss_curve"]):
            raise UserError(f"{log}: every loss_curve entry needs a 'loss' number (the train_log.json of "
                            "`critiquelab train`)")
        config = stats.get("config") or {}
        main = _group(c) == d.main
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
            critics.append({"method": c["method"], "seed": c["seed"], "model": c.get("model"), **r["metrics"],
                            "judged": _judged(r, cells_file=(run_dir / "cells.json").is_file()),
                            "best_of_n": r.get("best_of_n"),
                            "plot": str(f.parent.relative_to(run_dir) / "best_of_n.png") if r.get("best_of_n") else None})
    return critics


# ---------------------------------------------------------------------------------------------
# Sections: each takes the loaded run and returns its blocks (rendered to Markdown and HTML), writing
# its PNGs into the run directory


def _verdict(ci: list[float]) -> str:
    return "a better" if ci[0] > 0 else "a worse" if ci[1] < 0 else "no clear difference"


def section_title(d: Run) -> list[tuple]:
    m = d.manifest
    n_seeds = max((r["seeds"] for r in d.summary), default=1)
    blocks: list[tuple] = [("h", 1, f"critiquelab report: {m.get('name') or d.run_dir.name}"),
                           ("p", f"Data setting of the main table: {_label(d.main)}. {n_seeds} seed(s) per method; "
                                 f"{_compute_claim([c for c in d.done if _group(c) == d.main and c['method'] not in RL], d.budgets)}"
                                 "accuracy is final-answer accuracy on the same items for every method.")]
    if m.get("models"):
        blocks.append(("p", _base_models(m["models"])))
    left_out = [c for c in d.cells if c.get("status") == "left_out"]
    if left_out:
        blocks.append(("p", "Not in the tables: " + "; ".join(c["error"] for c in left_out) + "."))
    return blocks


def section_accuracy(d: Run) -> list[tuple]:
    main_rows = [r for r in d.summary if d.in_main(r)]
    benches = d.benches
    fails = defaultdict(list)  # (method, benchmark) -> format-failure shares of the main setting's seeds
    for r in d.runs:
        if d.in_main(r):
            fails[(r["method"], r["benchmark"])].append(r["format_failures"] / max(1, r["n"]))
    table = []
    for method in sorted({r["method"] for r in main_rows}, key=_order):
        cells_ = {r["benchmark"]: r for r in main_rows if r["method"] == method}
        row = [method, max(r["seeds"] for r in cells_.values())]
        row += [f"{_pct(cells_[b]['mean_accuracy'])} {_ci(cells_[b]['ci95'])}" if b in cells_ else "-" for b in benches]
        if len(benches) > 1:
            row.append(_pct(sum(r["mean_accuracy"] for r in cells_.values()) / len(cells_)))
        row += [_pct(sum(fails[(method, b)]) / len(fails[(method, b)])) if fails[(method, b)] else "-" for b in benches]
        table.append(row)
    plots.accuracy_bars(main_rows, benches, d.run_dir / "accuracy.png", **STYLE)
    return [("h", 2, "Accuracy (%), mean over seeds [95% bootstrap CI over seeds and items]"),
            ("p", "Format failures: answers with no boxed final answer (% of items, mean over seeds); they "
                  "count as wrong in the accuracy."),
            ("table", ["method", "seeds", *benches, *(["average"] if len(benches) > 1 else []),
                       *[f"format failures {b} (%)" for b in benches]], table),
            ("img", "accuracy.png", "accuracy")]


def section_comparisons(d: Run) -> list[tuple]:
    if not d.comps:
        return []
    multi = len({_group(c) for c in d.trained}) > 1
    rows = [[c["a"], c["b"], *([_label(tuple(c[k] for k in GROUP))] if multi else []), c["benchmark"],
             f"{100 * c['delta']:+.1f}", _ci(c["ci95"], True), f"{c['p_value']:.4f}", c["n"], _verdict(c["ci95"])]
            for c in d.comps]
    return [("h", 2, "Paired comparisons"),
            ("p", "Delta = a - b in points on the same items (an item's score is its mean correctness over "
                  "seeds); 95% bootstrap CI over items; two-sided sign-flip permutation p-value. Only a CI "
                  "that excludes 0 supports a claim of better or worse."),
            ("table", ["a", "b", *(["data setting"] if multi else []), "benchmark", "delta", "95% CI", "p", "n",
                       "verdict"], rows)]


def section_regime(d: Run) -> list[tuple]:
    regime_main = [g for g in d.regime if g.get("model") == d.main[0]]
    return _regime_blocks(regime_main, d.summary, d.main[0], d.benches[0]) if regime_main else []


def section_vs_best_sft(d: Run) -> list[tuple]:
    if not d.vs_best:
        return []
    blocks: list[tuple] = [
        ("h", 2, "CFT minus the best SFT"),
        ("p", "The best SFT variant of each setting is chosen on the validation split (mean over seeds of "
              "each run's selected checkpoint), never on test; delta in points on the same test items "
              "with a 95% bootstrap CI over items."),
        ("table", ["model", "params (M)", "base acc. (%)", "setting", "benchmark", "best SFT",
                   "chosen on", "CFT - best SFT", "95% CI", "p", "seeds"],
         [[r["model"] or "-", "-" if r["params"] is None else f"{r['params'] / 1e6:.2f}",
           "-" if r["base_accuracy"] is None else _pct(r["base_accuracy"]),
           _label((None, r["source"], r["teacher"], r["data_size"])), r["benchmark"], r["best_sft"],
           r["chosen_on"], f"{100 * r['delta']:+.1f}", _ci(r["ci95"], True), f"{r['p_value']:.4f}",
           r["seeds"]] for r in d.vs_best])]
    axis = [r for r in d.vs_best if r["benchmark"] == d.benches[0]
            and (r["source"], r["teacher"], r["data_size"]) == d.main[1:]]
    if len({r["model"] for r in d.vs_best}) > 1 and all(r["params"] for r in axis):
        plots.size_axis(axis, d.run_dir / "size_axis.png")
        blocks.append(("img", "size_axis.png", "CFT minus best SFT by model"))
    return blocks


def section_learning_rates(d: Run) -> list[tuple]:
    grid = [c for c in d.cells if c.get("lr_scores")]
    if not grid:
        return []
    lrs = sorted({lr for c in grid for lr in c["lr_scores"]}, key=float)
    seen, rows = set(), []
    for c in grid:
        key = (c["method"], _group(c))
        if key not in seen:
            seen.add(key)
            rows.append([c["method"], _label(_group(c)), *[_pct(c["lr_scores"][lr]) if lr in c["lr_scores"]
                                                           else "-" for lr in lrs], f"{c['lr']:g}"])
    return [("h", 2, "Learning rates (chosen on validation)"),
            ("p", "Validation accuracy (%) of the first seed's selected checkpoint at each rate; the chosen "
                  "rate trains every seed."),
            ("table", ["method", "setting", *lrs, "chosen"], rows)]


def section_data_size(d: Run) -> list[tuple]:
    if not d.by_size:
        return []
    bench = d.benches[0]
    rows_b = [r for r in d.by_size if r["benchmark"] == bench]
    base_row = next((r for r in d.summary if r["method"] == "base" and r["benchmark"] == bench), None)
    plots.data_sizes(rows_b, base_row, bench, d.run_dir / "data_size.png", **STYLE)
    return [("h", 2, f"Accuracy vs training data size ({bench})"),
            ("p", "Training questions per cell (the first N in a fixed order, so smaller sets nest in larger "
                  "ones); the token budget is the same at every size, so this measures the value of more "
                  "distinct questions at equal compute."),
            ("table", ["method", *[str(s) for s in d.sizes]],
             [[meth, *[next((f"{_pct(r['mean_accuracy'])} {_ci(r['ci95'])}" for r in rows_b
                             if r["method"] == meth and r["data_size"] == s), "-") for s in d.sizes]]
              for meth in sorted({r["method"] for r in rows_b}, key=_order)]),
            ("img", "data_size.png", "accuracy vs data size")]


def section_ablation(d: Run) -> list[tuple]:
    settings = sorted({(c["source"], c["teacher"]) for c in d.trained}, key=str)
    if len(settings) <= 1:
        return []
    bench = d.benches[0]
    largest = max(d.sizes) if d.sizes else None
    rows_s = [r for r in d.summary if r["benchmark"] == bench and r["method"] != "base" and r["data_size"] == largest]
    methods = sorted({r["method"] for r in rows_s}, key=_order)
    return [("h", 2, f"Ablation: noisy-solution source x teacher ({bench}, {largest or 'all'} questions)"),
            ("table", ["source", "teacher", *methods],
             [[s, t, *[next((f"{_pct(r['mean_accuracy'])} {_ci(r['ci95'])}" for r in rows_s
                             if (r["method"], r["source"], r["teacher"]) == (meth, s, t)), "-")
                       for meth in methods]] for s, t in settings])]


def section_critics(d: Run) -> list[tuple]:
    critics = d.critics
    if not critics:
        return []
    held_out = all(c["judged"] == HELD_OUT for c in critics)
    blocks: list[tuple] = [
        ("h", 2, "Critics"),
        ("p", ("Each model critiques sampled solutions of validation problems in the CFT prompt layout "
               if held_out else "Each model critiques the solutions named in the 'judged' column in the "
               "CFT prompt layout ")
              + "(SFT models and the base are prompted the same way); labels come from the reference "
                "answers. A constant verdict has balanced accuracy 50%."
              + "".join(f" {c['method']}: {c['imbalance']}." for c in critics if c.get("imbalance")))]
    rows = []
    many_models = len({c["model"] for c in critics}) > 1
    for c in critics:
        b = c["best_of_n"]
        bon = (" / ".join(_pct(b[k][-1]) for k in ("first", "majority", "critic_majority", "oracle"))
               + f" (N={b['n'][-1]})") if b else "-"
        step = (f"{_pct(c['names_first_wrong_step'])} {_ci(c['names_first_wrong_step_ci95'])}"
                if "names_first_wrong_step_ci95" in c else
                _pct(c["names_first_wrong_step"]) if "names_first_wrong_step" in c else "-")
        rows.append([*([c["model"]] if many_models else []), c["method"], "" if c["seed"] is None else c["seed"],
                     *([] if held_out else [c["judged"]]), c["n"], _pct(c["accuracy"]),
                     f"{_pct(c['balanced_accuracy'])} {_ci(c['balanced_accuracy_ci95'])}",
                     f"{c['wrong_f1']:.2f}", _pct(c["unparseable_rate"]), step, bon])
    blocks.append(("table", [*(["model"] if many_models else []), "critic", "seed",
                             *([] if held_out else ["judged"]), "n", "verdict acc. (%)",
                             "balanced acc. (%) [95% CI]", "F1 wrong", "no verdict (%)",
                             "names 1st wrong step (%) [95% CI]",
                             "best-of-N: first / majority / critic-majority / oracle (%)"], rows))
    first_seed = min((x["seed"] for x in critics if x["seed"] is not None), default=None)
    return blocks + [("img", c["plot"], f"best-of-N {c['method']}") for c in critics
                     if c["plot"] and c["model"] == d.main[0] and c["seed"] in (None, first_seed)]


def section_critic_comparisons(d: Run) -> list[tuple]:
    comps = d.critic_comps
    if not comps:
        return []
    many = len({x["model"] for x in comps}) > 1
    rows = [[*([c["model"]] if many else []), c["a"], c["b"], _pct(c["balanced_accuracy_a"]),
             _pct(c["balanced_accuracy_b"]), f"{100 * c['delta']:+.1f}", _ci(c["ci95"], True),
             f"{c['seeds_a']} / {c['seeds_b']}", c["n"], _verdict(c["ci95"])] for c in comps]
    return [("h", 3, "Critics compared (balanced accuracy, paired)"),
            ("p", "a - b in points of balanced verdict accuracy on the same judged solutions: each method's is "
                  "the mean over its seeds; 95% CI from a bootstrap over problems (a problem's solutions "
                  "resampled together) and over each method's seeds. Only a CI that excludes 0 supports a "
                  "claim of better or worse."),
            ("table", [*(["model"] if many else []), "a", "b", "a (%)", "b (%)", "delta", "95% CI", "seeds", "n",
                       "verdict"], rows)]


def section_rl(d: Run) -> list[tuple]:
    return _rl_blocks(d.rl_logs, d.training, d.run_dir) if d.rl_logs else []


def section_training(d: Run) -> list[tuple]:
    if not d.training:
        return []
    if d.curves:
        plots.loss(d.curves, d.run_dir / "loss.png", length_grouped=d.length_grouped, **STYLE)
    if d.selection:
        plots.selection(d.selection, d.selection_axis, d.run_dir / "selection.png", **STYLE)
    return [("h", 2, "Training"), *([("img", "loss.png", "training loss")] if d.curves else []),
            *([("img", "selection.png", "validation accuracy of every checkpoint")] if d.selection else []),
            ("table", ["cell", "examples (distinct)", "tokens", "steps", "mean loss", "last logged loss", "tokens/s"],
             [[name, f"{t['examples']} ({t.get('unique_examples', '-')})", t["tokens"], t["steps"],
               "-" if t.get("train_loss") is None else f"{t['train_loss']:.3f}",
               "-" if t["last_loss"] is None else f"{t['last_loss']:.3f}", t["tokens_per_s"]]
              for name, t in d.training.items()])]


def section_unfinished(d: Run) -> list[tuple]:
    """Cells not run yet, and failed or skipped cells."""
    blocks: list[tuple] = []
    pending = [c for c in d.cells if c.get("status") == "pending"]
    if pending:
        by_model = defaultdict(int)
        for c in pending:
            by_model[c.get("model") or "-"] += 1
        blocks += [("h", 2, "Cells not run yet"),
                   ("p", f"{len(pending)} cell(s) of the grid have not run: "
                         + ", ".join(f"model {m}: {n}" for m, n in by_model.items())
                         + ". Rerunning the experiment (or `--models` with those entries) runs them; the tables "
                           "above cover the finished cells only.")]
    failed = [c for c in d.cells if c.get("status") in ("failed", "skipped")]
    if failed:
        blocks += [("h", 2, "Failed and skipped cells"),
                   ("p", "Rerunning the experiment retries failed cells; finished cells are kept. Skipped cells "
                         "had no training examples."),
                   ("table", ["cell", "status", "reason"], [[c["name"], c["status"], c.get("error", "")[:300]]
                                                             for c in failed])]
    return blocks


def section_provenance(d: Run) -> list[tuple]:
    """Stage timings and provenance (commit, platform, versions, seeds, input hashes)."""
    blocks: list[tuple] = []
    if d.report["timings"]:
        blocks += [("h", 2, "Stage timings (s)"),
                   ("table", ["stage", "seconds"], [[k, v] for k, v in d.report["timings"].items()])]
    m = d.manifest
    if m:
        prov = m.get("provenance", {})
        blocks += [("h", 2, "Provenance"),
                   ("p", f"git commit {prov.get('git_commit')} (dirty: {prov.get('git_dirty')}); "
                         f"{prov.get('platform')}, torch threads {prov.get('torch_threads')}, GPU {prov.get('gpu')}; "
                         f"versions {prov.get('versions')}; seeds {m.get('seeds')}; base model {m.get('base_model')} "
                         f"(sha256 {str(m.get('sha256', {}).get('base_model', '-'))[:16]}); SHA-256 of "
                         f"{len(m.get('sha256', {}))} input files and the full config in manifest.json.")]
    return blocks


SECTIONS = (section_title, section_accuracy, section_comparisons, section_regime, section_vs_best_sft,
            section_learning_rates, section_data_size, section_ablation, section_critics, section_critic_comparisons,
            section_rl, section_training, section_unfinished, section_provenance)


def write_report(run_dir: str | Path) -> Path:
    """report.json, then report.md and report.html: the sections in order, each from the loaded run."""
    run_dir = _checked_run_dir(run_dir)
    run = load_run(run_dir)
    write_json(run_dir / "report.json", run.report)
    blocks = [block for section in SECTIONS for block in section(run)]
    for name, text in (("report.html", _html(blocks, run_dir, blocks[0][2])), ("report.md", _markdown(blocks))):
        with atomic_write(run_dir / name) as f:
            f.write(text)
    return run_dir / "report.md"


def _publish_fingerprint(run_dir: Path) -> str:
    return stable_hash({"run": str(run_dir.resolve())})


def check_publish(run_dir: str | Path, dest: str | Path, *, overwrite: bool = False) -> None:
    """Refuse a `--publish` directory before the report is (re)written, so a refusal changes nothing."""
    check_output_dir(dest, "report", fingerprint=_publish_fingerprint(Path(run_dir)), overwrite=overwrite,
                     label="--publish")


def publish(run_dir: str | Path, dest: str | Path, *, overwrite: bool = False) -> Path:
    """Copy a run's report (md, html, json, PNGs, critic plots, cells and manifest) to `dest`: the
    committed copy readers see without running anything. `dest` must be new, empty, or an earlier
    published report (replaced only with `overwrite`)."""

    run_dir = Path(run_dir)
    if not (run_dir / "report.md").exists():
        raise UserError(f"{run_dir}: no report.md to publish (run `critiquelab report {run_dir}` first)")
    files = [f for f in [*run_dir.glob("report.*"), *run_dir.glob("*.png"), run_dir / "cells.json",
                         run_dir / "manifest.json", *run_dir.glob("critic/*/best_of_n.png")] if f.is_file()]
    fingerprint = _publish_fingerprint(run_dir)
    with output_dir(dest, "report", fingerprint=fingerprint, overwrite=overwrite, label="--publish") as (dest, _):
        for f in files:
            target = dest / f.relative_to(run_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(target, "wb") as out:
                out.write(f.read_bytes())
        mark_complete(dest)
    return dest


def summary_line(path: Path, published: Path | None = None) -> str:
    """`report`'s one-line summary: where the report is, and where it was published."""
    return f"report: {path}" + (f"; published to {published}" if published else "")
