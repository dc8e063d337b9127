"""Plots of the report and of a critic's evaluation: each function draws one PNG from numbers already
computed (no statistics here), with methods in the report's order and colours (`order`, `colors`).

What a reader can trust: error bars are the tables' 95% intervals; ticks sit on values that exist
(integer N, the data sizes, the models' sizes); lines that would overlap are told apart by marker
and line style; losses of different tasks (critiques, solutions, their mix) get their own panels,
since their scales differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from critiquelab.io import pyplot, save_figure

__all__ = ["accuracy_bars", "best_of_n", "data_sizes", "loss", "rewards", "selection", "size_axis"]


def _key(order: Sequence[str]):
    return lambda m: order.index(m) if m in order else len(order)



def size_axis(rows: list[dict], path: Path) -> None:
    """CFT minus the best SFT (95% CI) against parameters and against base accuracy."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    series = sorted({r["critique_share"] for r in rows}, key=lambda x: (x is None, x or 0))
    for k, share in enumerate(series):
        pts = sorted((r for r in rows if r["critique_share"] == share), key=lambda r: r["params"] or 0)
        label = "pretraining without critiques" if share == 0 else (
            f"pretraining with {share:.0%} critiques" if share is not None else "given base")
        ys = [100 * r["delta"] for r in pts]
        err = [[100 * (r["delta"] - r["ci95"][0]) for r in pts], [100 * (r["ci95"][1] - r["delta"]) for r in pts]]
        for ax, key, scale, dodge in ((axes[0], "params", 1e6, 1 + 0.03 * k), (axes[1], "base_accuracy", 0.01, 1)):
            xs = [(r[key] or 0) / scale * dodge for r in pts]  # side by side on the log axis only
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label, color=f"C{k}",
                        linestyle="-" if key == "params" else "none")  # a line joins sizes, not accuracies
            for x, y, r in zip(xs, ys, pts, strict=True):
                ax.annotate(r["model"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes[0].set_xscale("log")
    params = sorted({r["params"] / 1e6 for r in rows if r["params"]})
    axes[0].set_xticks(params, [f"{p:.2g}" for p in params])
    axes[0].minorticks_off()
    axes[0].set_xlabel("parameters (M)")
    axes[1].set_xlabel("base accuracy (%)")
    axes[0].set_ylabel("CFT - best SFT (points), 95% CI")
    for ax in axes:
        ax.axhline(0, color="#888888", linewidth=1, linestyle="--")
    axes[0].legend(fontsize=7)
    fig.suptitle("CFT minus the best SFT, by model", fontsize=10)
    save_figure(fig, path)


def accuracy_bars(rows: list[dict], benches: list[str], path: Path, *, order: Sequence[str], colors: dict) -> None:
    plt = pyplot()
    methods = sorted({r["method"] for r in rows}, key=_key(order))
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(benches) * len(methods) ** 0.5 + 2), 3.6))
    for j, m in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        for i, b in enumerate(benches):
            r = next((r for r in rows if r["method"] == m and r["benchmark"] == b), None)
            if r:
                xs.append(i + (j - (len(methods) - 1) / 2) * width)
                ys.append(100 * r["mean_accuracy"])
                lo.append(100 * (r["mean_accuracy"] - r["ci95"][0]))
                hi.append(100 * (r["ci95"][1] - r["mean_accuracy"]))
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=m, color=colors.get(m))
    ax.set_xticks(range(len(benches)), benches)
    ax.set_ylabel("accuracy (%), 95% CI")
    ax.set_ylim(0, min(100, max(100 * r["ci95"][1] for r in rows) * 1.25 + 5))
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Mean accuracy over seeds")
    save_figure(fig, path)


def data_sizes(rows: list[dict], base: dict | None, bench: str, path: Path, *, order: Sequence[str],
               colors: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    methods = sorted({r["method"] for r in rows}, key=_key(order))
    for j, m in enumerate(methods):
        pts = sorted((r["data_size"], r) for r in rows if r["method"] == m)
        dodge = 1 + 0.04 * (j - (len(methods) - 1) / 2)  # side by side, so the intervals stay readable
        ax.errorbar([x * dodge for x, _ in pts], [100 * r["mean_accuracy"] for _, r in pts], capsize=3, marker="o",
                    label=m, color=colors.get(m), yerr=[[100 * (r["mean_accuracy"] - r["ci95"][0]) for _, r in pts],
                                                        [100 * (r["ci95"][1] - r["mean_accuracy"]) for _, r in pts]])
    if base:
        ax.axhline(100 * base["mean_accuracy"], color=colors.get("base"), linestyle="--", linewidth=1, label="base")
    sizes = sorted({r["data_size"] for r in rows})
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(x) for x in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training questions (same token budget)")
    ax.set_ylabel(f"{bench} accuracy (%), 95% CI")
    ax.legend(fontsize=7)
    ax.set_title("Accuracy vs training data size")
    save_figure(fig, path)


def selection(curves: dict[str, list[list[tuple[float, float]]]], axis: str, path: Path, *, order: Sequence[str],
              colors: dict) -> None:
    """The selection curve: validation accuracy of every saved checkpoint (each seed a line)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for m in sorted(curves, key=_key(order)):
        for k, points in enumerate(curves[m]):
            points = sorted(points)
            ax.plot([x for x, _ in points], [100 * y for _, y in points], marker="o", markersize=3,
                    color=colors.get(m), alpha=0.8, linewidth=1, label=m if k == 0 else None)
    ax.set_xlabel(axis)
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(fontsize=7)
    ax.set_title("Checkpoint selection on validation, every seed")
    save_figure(fig, path)


def loss(panels: dict[str, dict[str, list[list[dict]]]], path: Path, *, order: Sequence[str], colors: dict,
         length_grouped: bool = False) -> None:
    """Training loss per step, every seed, one panel per task (`panels`: task -> method -> curves):
    the loss of a critique and of a solution are not on one scale."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1, 3.6), squeeze=False)
    for ax, (task, curves) in zip(axes[0], panels.items(), strict=True):
        for m in sorted(curves, key=_key(order)):
            for k, curve in enumerate(curves[m]):
                ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], color=colors.get(m), alpha=0.8,
                        linewidth=1, label=m if k == 0 else None)
        ax.set_xlabel("step")
        ax.xaxis.get_major_locator().set_params(integer=True)  # steps are counts
        losses = [p["loss"] for cs in curves.values() for curve in cs for p in curve]
        if min(losses) > 0 and max(losses) > 10 * min(losses):  # a log axis only over more than a decade
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(lambda y, _: f"{y:.2g}")  # 0.1, not 10^-1; minor ticks: 2 and 5 only
            ax.yaxis.set_minor_formatter(lambda y, _: f"{y:.2g}" if f"{y:.0e}"[0] in "25" else "")
        ax.set_title(task, fontsize=9)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("training loss (completion tokens)")
    fig.suptitle("Training loss, every seed" + (": regular spikes are length-grouped batches (a batch of long "
                                               "examples), not instability" if length_grouped else ""), fontsize=9)
    save_figure(fig, path)


MARKERS = {"first": ("o", "-"), "majority": ("s", "--"), "critic_majority": ("^", "-."), "oracle": ("D", ":")}


def best_of_n(curves: dict, path: Path, title: str) -> None:
    """Accuracy against N: first sample, majority, critic-filtered majority, oracle pass@N. Each has its
    own marker and line style, and is shifted slightly sideways, so equal curves stay visible."""
    fig, ax = pyplot().subplots(figsize=(4.5, 3.2))
    for k, (name, (marker, style)) in enumerate(MARKERS.items()):
        ax.plot([n + 0.04 * (k - 1.5) for n in curves["n"]], [100 * v for v in curves[name]], marker=marker,
                linestyle=style, markersize=5, markerfacecolor="none" if k % 2 else None, label=name)
    ax.locator_params(axis="x", integer=True)  # N is a count of samples: integer ticks only
    values = [100 * v for name in MARKERS for v in curves[name]]
    mid = (min(values) + max(values)) / 2
    half = max(5.0, (max(values) - min(values)) / 2 + 3)  # a flat curve is not blown up to fill the plot
    ax.set_ylim(max(0.0, mid - half) - 1, min(100.0, mid + half) + 1)
    ax.set_xlabel("N samples (curves shifted sideways to stay visible)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def rewards(logs: dict[str, dict], path: Path, *, order: Sequence[str], colors: dict) -> None:
    """Mean reward and the share of critiques saying "right", per step (moving mean of 10), every seed."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    seen: set[str] = set()
    for _, log in sorted(logs.items(), key=lambda kv: (_key(order)(kv[1]["method"]), kv[0])):
        m = log["method"]
        for ax, key in zip(axes, ("reward", "verdict_right_share"), strict=True):
            pts = [(p["step"], p[key]) for p in log["curve"] if p.get(key) is not None]
            if len(pts) < 2:
                continue
            k = min(10, len(pts))
            smooth = np.convolve([v for _, v in pts], np.ones(k) / k, mode="valid")
            ax.plot([s for s, _ in pts][k - 1:], smooth, color=colors.get(m), alpha=0.8, linewidth=1,
                    label=m if (m, key) not in seen else None)
            seen.add((m, key))
    axes[0].set_ylabel("mean reward (moving mean of 10 steps)")
    axes[1].set_ylabel('share of critiques saying "right"')
    axes[1].axhline(0.5, color="#888888", linewidth=0.8, linestyle="--")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.suptitle("Critique RL: rewards and the verdicts' balance, every seed", fontsize=9)
    save_figure(fig, path)
