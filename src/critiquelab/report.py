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

The numbers come from results.py (`load_run`); this module writes them as sections (one function
each, `SECTIONS`), plots (plots.py) and the publishing of a report.

    critiquelab report runs/demo
"""

from __future__ import annotations

import base64
import html
import re
import shlex
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlencode

from critiquelab import plots
from critiquelab.io import (
    UserError,
    atomic_write,
    check_output_dir,
    mark_complete,
    output_dir,
    read_json,
    read_marker,
    stable_hash,
    write_json,
)
from critiquelab.methods import TABLE
from critiquelab.results import GROUP, HELD_OUT, METHOD_ORDER, RL, Run, group_of, load_run, method_rank

__all__ = ["check_publish", "publish", "summary_line", "write_report"]

COLORS = {m.name: m.color for m in TABLE.values()}
STYLE = {"order": METHOD_ORDER, "colors": COLORS}  # the plots' method order and colours


# ---------------------------------------------------------------------------------------------
# Blocks shared by sections


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
            for name, log in sorted(logs.items(), key=lambda kv: (method_rank(kv[1]["method"]), kv[0]))]
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
    def inline(text: str) -> str:  # `code`, and Markdown links into the run's sample page
        text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
        return re.sub(rf"\[([^\[\]]+)\]\(({re.escape(VIEW)}#[^()\s]*)\)", r'<a href="\2">\1</a>', text)

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


VIEW = "view.html"  # the run's sample page (`critiquelab view RUN --out RUN/view.html`), linked when present


def _view_link(run_dir: Path, text: str, **fragment) -> str:
    """A Markdown link to the cards of the sample page that `fragment` picks (tab, filters), or the text alone."""
    if not (run_dir / VIEW).is_file():
        return text
    return f"[{text}]({VIEW}#{urlencode(fragment, safe='/')})"


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


def _built_with(b: dict) -> str:
    """What decided a base's weights beyond its configs, in a few words."""
    env = " ".join(f"{k}={v}" for k, v in (b.get("kernel_env") or {}).items())
    return (f"built with torch {b.get('torch')}, transformers {b.get('transformers')}, {b.get('machine')} "
            f"{b.get('cpu_capability')} kernels, {b.get('blas')}" + (f", {env}" if env else ""))


def _base_models(models: dict) -> str:
    """Where each model's base is: given, or pretrained on the world and kept in the cache."""
    parts = [f"{'' if name == 'default' else name + ': '}`{info.get('base')}`"
             + ("" if info.get("pretrain") is None else
                (" (pretrained on the world once and shipped with critiquelab, checked by sha256" if info.get("shipped")
                 else " (pretrained on the world, kept in the cache")
                + (f"; {_built_with(info['built_with'])}" if info.get("built_with") else "") + ")")
             + (f" — built with other versions or kernels than this run's: {'; '.join(info['built_elsewhere'])}"
                if info.get("built_elsewhere") else "")
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


def _checked_run_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError(f"{run_dir}: run directory not found")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a directory (give the run directory of an experiment or one holding "
                        "eval/<name>/results.json)")
    _check_report_files(run_dir)
    return run_dir


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
                                 f"{_compute_claim([c for c in d.done if group_of(c) == d.main and c['method'] not in RL], d.budgets)}"
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
    for method in sorted({r["method"] for r in main_rows}, key=method_rank):
        cells_ = {r["benchmark"]: r for r in main_rows if r["method"] == method}
        row = [method, max(r["seeds"] for r in cells_.values())]
        row += [f"{_pct(cells_[b]['mean_accuracy'])} {_ci(cells_[b]['ci95'])}" if b in cells_ else "-" for b in benches]
        if len(benches) > 1:
            row.append(_pct(sum(r["mean_accuracy"] for r in cells_.values()) / len(cells_)))
        row += [_pct(sum(fails[(method, b)]) / len(fails[(method, b)])) if fails[(method, b)] else "-" for b in benches]
        table.append(row)
    plots.accuracy_bars(main_rows, benches, d.run_dir / "accuracy.png", **STYLE)
    return [("h", 2, "Accuracy (%), mean over seeds [95% bootstrap CI over seeds and items]"),
            ("p", "Format failures: answers with no boxed final answer (beyond math: none that can be read, or "
                  "several options at once) (% of items, mean over seeds); they count as wrong in the accuracy."),
            ("table", ["method", "seeds", *benches, *(["average"] if len(benches) > 1 else []),
                       *[f"format failures {b} (%)" for b in benches]], table),
            ("img", "accuracy.png", "accuracy")]


def section_samples(d: Run) -> list[tuple]:
    """Links to each method's answers and each critic's critiques in the run's sample page, or,
    before there is one, the command that writes it."""
    if not (d.run_dir / VIEW).is_file():
        run = shlex.quote(str(d.run_dir))
        page = shlex.quote(str(d.run_dir / VIEW))
        return [("h", 2, "Samples"),
                ("p", f"No sample page yet: `critiquelab view {run} --out {page}` writes one (every critique, "
                      "verdict and answer of the run, card by card, in one HTML file that opens from disk); "
                      f"then `critiquelab report {run}` links its cards from here.")]
    methods = sorted({(r["cell"], r["benchmark"]) for r in d.runs}, key=lambda x: (x[1], x[0]))
    return [("h", 2, "Samples"),
            ("p", f"Card by card in `{VIEW}` (`critiquelab view`), each method's answers: "
                  + ", ".join(_view_link(d.run_dir, f"{cell} ({bench})", tab=f"eval/{cell}/{bench}")
                              for cell, bench in methods)
                  + ("; each critic's critiques: " + ", ".join(_view_link(d.run_dir, c["cell"], tab=f"critic/{c['cell']}")
                                                              for c in d.critics) if d.critics else "") + ".")]


def section_models(d: Run) -> list[tuple]:
    """With a model axis (sizes, pretraining, critique styles): every model's methods on the first
    benchmark, in the main setting's source, teacher and data size (the accuracy table shows one model)."""
    bench, (_, *setting) = d.benches[0], d.main
    rows = [r for r in d.summary if r["benchmark"] == bench and (r["method"] == "base" or
                                                                  [r[k] for k in GROUP[1:]] == setting)]
    models = sorted({r["model"] for r in rows}, key=str)
    if len(models) <= 1:
        return []
    methods = sorted({r["method"] for r in rows}, key=method_rank)
    cell = {(r["model"], r["method"]): f"{_pct(r['mean_accuracy'])} {_ci(r['ci95'])}" for r in rows}
    return [("h", 2, f"Accuracy (%) per model ({bench}), mean over seeds [95% CI]"),
            ("table", ["model", *methods], [[m, *[cell.get((m, meth), "-") for meth in methods]] for m in models])]


def section_comparisons(d: Run) -> list[tuple]:
    if not d.comps:
        return []
    multi = len({group_of(c) for c in d.trained}) > 1
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
    names = " and ".join(dict.fromkeys(r["method"].upper() for r in d.vs_best))  # CFT, CGD
    blocks: list[tuple] = [
        ("h", 2, f"{names} minus the best SFT"),
        ("p", "The best SFT variant of each setting is chosen on the validation split (mean over seeds of "
              "each run's selected checkpoint), never on test; delta in points on the same test items "
              "with a 95% bootstrap CI over items."
              + (" Here the benchmark is the validation split itself: the best SFT is chosen on the items it is "
                 "measured on, so this is exploration, not a test result."
                 if any(r["benchmark"] == "world-validation" for r in d.vs_best) else "")),
        ("table", ["method", "model", "params (M)", "base acc. (%)", "setting", "benchmark", "best SFT",
                   "chosen on", "method - best SFT", "95% CI", "p", "seeds"],
         [[r["method"], r["model"] or "-", "-" if r["params"] is None else f"{r['params'] / 1e6:.2f}",
           "-" if r["base_accuracy"] is None else _pct(r["base_accuracy"]),
           _label((None, r["source"], r["teacher"], r["data_size"])), r["benchmark"], r["best_sft"],
           r["chosen_on"], f"{100 * r['delta']:+.1f}", _ci(r["ci95"], True), f"{r['p_value']:.4f}",
           r["seeds"]] for r in d.vs_best])]
    axis = [r for r in d.vs_best if r["method"] == "cft" and r["benchmark"] == d.benches[0]
            and (r["source"], r["teacher"], r["data_size"]) == d.main[1:]]
    if len({r["model"] for r in axis}) > 1 and all(r["params"] for r in axis):
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
        key = (c["method"], group_of(c))
        if key not in seen:
            seen.add(key)
            rows.append([c["method"], _label(group_of(c)), *[_pct(c["lr_scores"][lr]) if lr in c["lr_scores"]
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
              for meth in sorted({r["method"] for r in rows_b}, key=method_rank)]),
            ("img", "data_size.png", "accuracy vs data size")]


def section_ablation(d: Run) -> list[tuple]:
    """Each source x teacher setting's accuracy per method; with a model axis, a row per model and setting."""
    settings = sorted({(c["model"], c["source"], c["teacher"]) for c in d.trained}, key=str)
    if len({s[1:] for s in settings}) <= 1:
        return []
    many = len({s[0] for s in settings}) > 1
    bench = d.benches[0]
    largest = max(d.sizes) if d.sizes else None
    rows_s = [r for r in d.summary if r["benchmark"] == bench and r["method"] != "base" and r["data_size"] == largest]
    methods = sorted({r["method"] for r in rows_s}, key=method_rank)
    return [("h", 2, f"Ablation: noisy-solution source x teacher ({bench}, {largest or 'all'} questions)"),
            ("table", ["model"] * many + ["source", "teacher", *methods],
             [[m] * many + [s, t, *[next((f"{_pct(r['mean_accuracy'])} {_ci(r['ci95'])}" for r in rows_s
                                          if (r["method"], r["model"], r["source"], r["teacher"]) == (meth, m, s, t)),
                                         "-")
                                    for meth in methods]] for m, s, t in settings])]


def section_critics(d: Run) -> list[tuple]:
    critics = d.critics
    if not critics:
        return []
    held_out = len({c["judged"] for c in critics}) == 1 and critics[0]["judged"].endswith(HELD_OUT)
    split = critics[0]["judged"].split(" ", 1)[0]
    blocks: list[tuple] = [
        ("h", 2, "Critics"),
        ("p", (f"Each model critiques sampled solutions of {split} problems in the CFT prompt layout "
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
    return blocks + _where_critics_fail(critics, many_models, d.run_dir) + [
        ("img", c["plot"], f"best-of-N {c['method']}") for c in critics
        if c["plot"] and c["model"] == d.main[0] and c["seed"] in (None, first_seed)]


def _where_critics_fail(critics: list[dict], many_models: bool, run_dir: Path) -> list[tuple]:
    """False alarms on right solutions; on wrong ones, recall per error kind (the world's labels)
    and the share flagged with their first wrong step named; Wilson intervals. The worst kind links
    to its missed solutions' cards in the sample page, when there is one."""
    kinds = sorted({k for c in critics for k in c.get("recall_by_kind") or {}})
    if not kinds and not any("false_alarm_rate" in c for c in critics):
        return []

    def cell(rate, ci) -> str:
        return "-" if rate is None else f"{_pct(rate)} {_ci(ci)}"

    rows = []
    for c in critics:
        by_kind = c.get("recall_by_kind") or {}
        rows.append([*([c["model"]] if many_models else []), c["method"], "" if c["seed"] is None else c["seed"],
                     cell(c.get("false_alarm_rate"), c.get("false_alarm_ci95")),
                     cell(c.get("first_error_step_accuracy"), c.get("first_error_step_ci95")),
                     *[f"{_pct(by_kind[k]['recall'])} {_ci(by_kind[k]['ci95'])} (n={by_kind[k]['n']})"
                       if k in by_kind else "-" for k in kinds]])
        if kinds:
            worst = min(by_kind, key=lambda k: (by_kind[k]["recall"], k)) if by_kind else None
            rows[-1].append("-" if worst is None else _view_link(
                run_dir, f"{worst} ({_pct(by_kind[worst]['recall'])})", tab=f"critic/{c['cell']}", kind=worst,
                label="wrong", agree="disagree,no verdict"))
    return [("p", "Where the critics fail: false alarms are right solutions called wrong; 'flags and locates' is the "
                  "share of wrong solutions called wrong with their first wrong step named; the recall of each error "
                  "kind (labelled by the world's exact checker) is the share of those solutions called wrong."),
            ("table", [*(["model"] if many_models else []), "critic", "seed", "false alarms (%) [95% CI]",
                       "flags and locates 1st error (%) [95% CI]", *[f"recall: {k} (%)" for k in kinds],
                       *(["worst kind (its misses)"] if kinds else [])], rows)]


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


SECTIONS = (section_title, section_accuracy, section_samples, section_models, section_comparisons, section_regime, section_vs_best_sft,
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
    files = [f for f in [*run_dir.glob("report.*"), *run_dir.glob("*.png"), run_dir / "cells.json", run_dir / VIEW,
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
