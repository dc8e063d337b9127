"""Report: accuracy table with 95% intervals, bar chart, training details and provenance.

Input: the run directory (`eval/<run>/results.json`, `models/<run>/train_log.json`,
`manifest.json`). Outputs: `report.json` (`runs: [{method, seed, benchmark, accuracy, n, ci95}]`,
`manifest`, `timings`, `training`), `report.md` and `accuracy.png`.

    critiquelab report runs/demo
"""

from __future__ import annotations

from pathlib import Path

from critiquelab.io import UserError, read_json, write_json

__all__ = ["collect_runs", "comparisons", "paired_comparison", "seed_means", "write_report"]

METHOD_ORDER = ["base", "sft_reference", "sft_noisy", "sft_verified", "sft_teacher", "cft", "cft_sft_mix"]


def _method_seed(run: str) -> tuple[str, int | None]:
    if run == "base":
        return "base", None
    method, _, seed = run.rpartition("-s")
    return (method, int(seed)) if seed.isdigit() else (run, None)


def collect_runs(run_dir: Path) -> list[dict]:
    runs = []
    for results in sorted((run_dir / "eval").glob("*/results.json")):
        method, seed = _method_seed(results.parent.name)
        for bench, r in read_json(results)["benchmarks"].items():
            runs.append({"method": method, "seed": seed, "benchmark": bench, "accuracy": r["accuracy"],
                         "n": r["n"], "ci95": r["ci95"], "no_answer": r["no_answer"],
                         "format_failures": r["no_answer"] + r.get("fallback", 0)})
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    runs.sort(key=lambda r: (order.get(r["method"], 99), r["method"], r["seed"] or 0, r["benchmark"]))
    return runs


def paired_comparison(a: list[float], b: list[float], *, reps: int = 5000, seed: int = 0) -> dict:
    """Per-item paired difference a - b: mean, bootstrap 95% CI over items, and a two-sided
    sign-flip permutation p-value (items are the unit; a and b are per-item mean correctness)."""
    import numpy as np

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    n = len(d)
    boots = d[rng.integers(0, n, size=(reps, n))].mean(axis=1)
    flips = (rng.integers(0, 2, size=(reps, n)) * 2 - 1) * d
    observed = abs(d.mean())
    p = (np.sum(np.abs(flips.mean(axis=1)) >= observed - 1e-12) + 1) / (reps + 1)
    return {"delta": float(d.mean()), "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
            "p_value": float(p), "n": n}


def _items(run_dir: Path) -> dict[tuple[str, str], list[dict[str, bool]]]:
    """(method, benchmark) -> one {item id: correct} map per seed."""
    from collections import defaultdict

    from critiquelab.io import read_jsonl

    items: dict[tuple[str, str], list[dict[str, bool]]] = defaultdict(list)
    for f in sorted((run_dir / "eval").glob("*/*.jsonl")):
        method, _ = _method_seed(f.parent.name)
        items[(method, f.stem)].append({r["id"]: bool(r["correct"]) for r in read_jsonl(f, tolerate_torn_tail=True)})
    return items


def seed_means(run_dir: Path, reps: int = 2000, seed: int = 0) -> list[dict]:
    """Mean accuracy over seeds per method and benchmark, with a 95% bootstrap CI that resamples
    both seeds and items."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for (method, bench), runs in _items(run_dir).items():
        common = sorted(set.intersection(*(set(r) for r in runs)))
        m = np.array([[r[i] for i in common] for r in runs], dtype=float)  # seeds x items
        boots = [m[rng.integers(0, m.shape[0], m.shape[0])][:, rng.integers(0, m.shape[1], m.shape[1])].mean()
                 for _ in range(reps)]
        out.append({"method": method, "benchmark": bench, "seeds": m.shape[0], "n": m.shape[1],
                    "mean_accuracy": float(m.mean()), "ci95": [float(np.quantile(boots, 0.025)),
                                                               float(np.quantile(boots, 0.975))]})
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(out, key=lambda r: (order.get(r["method"], 99), r["benchmark"]))


def comparisons(run_dir: Path) -> list[dict]:
    """CFT (and the CFT+SFT mix) against every other method, per benchmark, paired on items;
    with several seeds, an item's score is its mean correctness over the seeds."""
    items = _items(run_dir)
    out = []
    for (a, bench), runs_a in sorted(items.items()):
        if a not in ("cft", "cft_sft_mix"):
            continue
        for (b, bench_b), runs_b in sorted(items.items()):
            if bench_b != bench or b == a:
                continue
            common = sorted(set.intersection(*(set(r) for r in runs_a + runs_b)))
            if not common:
                continue
            score = lambda runs, i: sum(r[i] for r in runs) / len(runs)  # noqa: E731
            res = paired_comparison([score(runs_a, i) for i in common], [score(runs_b, i) for i in common])
            out.append({"a": a, "b": b, "benchmark": bench, "seeds_a": len(runs_a), "seeds_b": len(runs_b), **res})
    return out


def _plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['method']}" + (f" s{r['seed']}" if r["seed"] is not None else "") + f"\n{r['benchmark']}"
              for r in runs]
    acc = [100 * r["accuracy"] for r in runs]
    err = [[100 * (r["accuracy"] - r["ci95"][0]) for r in runs], [100 * (r["ci95"][1] - r["accuracy"]) for r in runs]]
    colors = {"base": "#888888", "sft_reference": "#4c72b0", "sft_noisy": "#dd8452", "sft_verified": "#8172b3",
              "cft": "#55a868"}
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(runs)), 3.6))
    ax.bar(range(len(runs)), acc, yerr=err, capsize=4, color=[colors.get(r["method"], "#c44e52") for r in runs])
    ax.set_xticks(range(len(runs)), labels, fontsize=8)
    ax.set_ylabel("accuracy (%) with 95% CI")
    ax.set_ylim(0, 100)
    ax.set_title("Final-answer accuracy")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    runs = collect_runs(run_dir)
    if not runs:
        raise UserError(f"{run_dir}: no evaluation results (eval/*/results.json) to report")
    manifest = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").exists() else {}
    training = {}
    for log in sorted((run_dir / "models").glob("*/train_log.json")):
        stats = read_json(log)
        training[log.parent.name] = {k: v for k, v in stats.items() if k not in ("loss_curve", "config")}
        training[log.parent.name]["last_loss"] = stats["loss_curve"][-1]["loss"] if stats["loss_curve"] else float("nan")
    critics = []
    for f in sorted((run_dir / "critic").glob("*/critic.json")):
        c = read_json(f)
        method, seed = _method_seed(f.parent.name)
        critics.append({"method": method, "seed": seed, **c["metrics"], "best_of_n": c.get("best_of_n"),
                        "plot": str(f.parent.relative_to(run_dir) / "best_of_n.png") if c.get("best_of_n") else None})
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    critics.sort(key=lambda c: (order.get(c["method"], 99), c["seed"] or 0))
    report = {"runs": runs, "summary": seed_means(run_dir), "comparisons": comparisons(run_dir), "manifest": manifest.get("manifest", {}),
              "timings": manifest.get("timings", {}), "training": training, "critics": critics}
    write_json(run_dir / "report.json", report)
    _plot(runs, run_dir / "accuracy.png")

    lines = [f"# critiquelab report: {run_dir.name}", "",
             "| method | seed | benchmark | accuracy (%) | 95% CI | n | format failures |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['method']} | {'' if r['seed'] is None else r['seed']} | {r['benchmark']} | "
                     f"{100 * r['accuracy']:.1f} | {100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f} | {r['n']} | "
                     f"{r['format_failures']} |")
    if any(r["seeds"] > 1 for r in report["summary"]):
        lines += ["", "Mean over seeds (95% bootstrap CI resampling seeds and items):", "",
                  "| method | benchmark | seeds | mean accuracy (%) | 95% CI |", "|---|---|---|---|---|"]
        lines += [f"| {r['method']} | {r['benchmark']} | {r['seeds']} | {100 * r['mean_accuracy']:.1f} | "
                  f"{100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f} |" for r in report["summary"]]
    if report["comparisons"]:
        lines += ["", "Paired comparisons on the same items (delta in points; 95% bootstrap CI over items; "
                  "two-sided sign-flip permutation p-value):", "",
                  "| a | b | benchmark | delta | 95% CI | p | n |", "|---|---|---|---|---|---|---|"]
        for c in report["comparisons"]:
            lines.append(f"| {c['a']} | {c['b']} | {c['benchmark']} | {100 * c['delta']:+.1f} | "
                         f"{100 * c['ci95'][0]:+.1f} to {100 * c['ci95'][1]:+.1f} | {c['p_value']:.4f} | {c['n']} |")
    lines += ["", "Format failures: responses without a `\\boxed{}` (or other explicit) final answer; they are "
              "graded on their last number, or as wrong when there is none.", "", "![accuracy](accuracy.png)", ""]
    if critics:
        lines += ["## Critics", "", "Each model critiques sampled solutions of validation problems in the CFT prompt "
                  "layout (SFT models and the base are prompted the same way); labels come from the reference "
                  "answers. The constant-verdict baseline has balanced accuracy 50%.", "",
                  "| critic | seed | n | verdict acc. (%) | balanced acc. (%) [95% CI] | F1 wrong | no verdict (%) | "
                  "names 1st wrong step (%) | best-of-N: first / majority / critic-majority / oracle (%) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in critics:
            b = c["best_of_n"]
            bon = (" / ".join(f"{100 * b[k][-1]:.1f}" for k in ("first", "majority", "critic_majority", "oracle"))
                   + f" (N={b['n'][-1]})") if b else "-"
            step = f"{100 * c['names_first_wrong_step']:.1f}" if "names_first_wrong_step" in c else "-"
            lines.append(f"| {c['method']} | {'' if c['seed'] is None else c['seed']} | {c['n']} | "
                         f"{100 * c['accuracy']:.1f} | {100 * c['balanced_accuracy']:.1f} "
                         f"[{100 * c['balanced_accuracy_ci95'][0]:.1f}, {100 * c['balanced_accuracy_ci95'][1]:.1f}] | "
                         f"{c['wrong_f1']:.2f} | {100 * c['unparseable_rate']:.1f} | {step} | {bon} |")
        lines.append("")
        lines += [f"![best-of-N {c['method']}]({c['plot']})" for c in critics if c["plot"]]
        lines.append("")
    if training:
        lines += ["## Training", "", "| run | examples | tokens | steps | mean loss | last logged loss | tokens/s |",
                  "|---|---|---|---|---|---|---|"]
        for name, t in training.items():
            lines.append(f"| {name} | {t['examples']} | {t['tokens']} | {t['steps']} | {t['train_loss']:.3f} | "
                         f"{t['last_loss']:.3f} | {t['tokens_per_s']} |")
        lines.append("")
    if report["timings"]:
        lines += ["## Stage timings (s)", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in report["timings"].items()]
        lines.append("")
    m = report["manifest"]
    if m:
        prov = m.get("provenance", {})
        lines += ["## Provenance", "", f"- git commit: {prov.get('git_commit')} (dirty: {prov.get('git_dirty')})",
                  f"- versions: {prov.get('versions')}", f"- platform: {prov.get('platform')}, "
                  f"torch threads {prov.get('torch_threads')}, GPU {prov.get('gpu')}",
                  f"- seeds: {m.get('seeds')}; base model: {m.get('base_model')}", ""]
    path = run_dir / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path
