"""Using and judging critics: verdicts on labelled solutions, and critic-filtered best-of-N.

`run_judge`: the critic writes a critique of each {question, solution} in the CFT prompt layout
(the one CFT models were trained on; SFT models are prompted the same way) and its verdict is
parsed from `Conclusion: right/wrong` (unparseable verdicts are counted, never guessed).
Judgements are appended as they come, so an interrupted run resumes.

`critic_metrics`: on solutions whose correctness is known (`correct`, graded against the
reference), verdict accuracy, precision / recall / F1 for "wrong", balanced accuracy with a
bootstrap interval over problems (stats.py), the unparseable rate, a constant-verdict baseline and, in the synthetic
world, whether the critique names the first wrong step.

`best_of_n`: with N sampled solutions per problem, accuracy against N of the first sample,
majority vote, critic-filtered majority vote (vote over solutions the critic accepts; all of
them when it accepts none) and the oracle pass@N.

    critiquelab eval-critic --critic runs/demo/models/cft-s0 --solutions runs/demo/critic/solutions.jsonl --out runs/demo/critic/cft
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict
from functools import partial
from pathlib import Path

from critiquelab import plots
from critiquelab.build import cft_prompt
from critiquelab.config import CriticConfig
from critiquelab.critique import parse_verdict
from critiquelab.evaluate import check_backend, make_backend
from critiquelab.grading import equivalent, extract_answer
from critiquelab.io import (
    UserError,
    check_rows,
    output_dir,
    read_jsonl,
    stable_hash,
    write_json,
)
from critiquelab.llm import Sampling, fit_counts, fit_note, generate_resumable
from critiquelab.stats import balanced_accuracy, bootstrap, wilson_ci

__all__ = ["read_judged", "run_judge", "judge", "judge_settings", "judge_summary_line", "critic_metrics", "named_step", "best_of_n",
           "run_eval_critic", "summary_line"]

JUDGED_FIELDS = {"id": (str, int), "question": str, "solution": str}
LABEL_FIELDS = {"correct": bool, "problem_id": (str, int), "answer": (str, int, float), "first_error_step": int,
                "error_kind": str}


def read_judged(path: str | Path, labels: bool = False) -> list[dict]:
    """Solutions for a critic: unique `id`, `question`, `solution` (and, to score the critic, the
    `correct` labels of at least one row), checked with file:line before anything is judged."""
    rows = read_jsonl(path, what="solutions")
    check_rows(rows, path, JUDGED_FIELDS, optional=LABEL_FIELDS, unique="id",
               fix="expected rows of `critiquelab sample` (see docs/formats.md)")
    if labels and not any(isinstance(r.get("correct"), bool) for r in rows):
        raise UserError(f"{path}: no row has a 'correct' label (true/false); eval-critic scores verdicts against "
                        "them (`critiquelab sample` writes them when problems have an 'answer')")
    return rows


def judge_settings(critic, cfg: CriticConfig) -> tuple[dict, Sampling]:
    sampling = Sampling(max_new_tokens=cfg.max_new_tokens, stop=["[END]"])
    return {"critic": str(critic), "backend": cfg.backend, "api_model": cfg.api_model,
            "instruction": cfg.instruction, "sampling": sampling.to_dict()}, sampling


def run_judge(critic: str | Path, solutions: list[dict], out_path: Path, cfg: CriticConfig | None = None, *,
              backend=None, vllm=None, stats: dict | None = None) -> list[dict]:
    """The critic's critique and parsed verdict of every solution, resumable in `out_path` (a
    `backend` object generates in this process; the config's runs `critic.data_parallel` processes;
    `stats` gets the prompts cut and generations shortened to fit the context)."""
    cfg = cfg or CriticConfig()
    settings, sampling = judge_settings(critic, cfg)
    return generate_resumable(
        out_path, solutions, (lambda: backend) if backend is not None else partial(make_backend, critic, cfg, vllm),
        lambda s: [{"role": "user", "content": cft_prompt(s["question"], s["solution"], cfg.instruction)}],
        lambda s, t: {"id": s["id"], "critique": t, "verdict": parse_verdict(t)},
        sampling, chunk=cfg.batch_size * 4, settings=settings,
        data_parallel=1 if backend is not None else cfg.data_parallel, tensor_parallel=cfg.tensor_parallel,
        stats=stats)


def judge(critic: str | Path, solutions_path: str | Path, out_dir: str | Path, cfg: CriticConfig, *,
          vllm=None, overwrite: bool = False) -> list[dict]:
    """`critiquelab judge`: inputs and the critic checked first, then `out_dir/judgements.jsonl`."""
    solutions = read_judged(solutions_path)
    check_backend(critic, cfg, "critic")
    fingerprint = stable_hash(judge_settings(critic, cfg)[0])
    with output_dir(out_dir, "judge", fingerprint=fingerprint, overwrite=overwrite) as (out, _):
        return run_judge(critic, solutions, out / "judgements.jsonl", cfg, vllm=vllm)


def judge_summary_line(judgements: list[dict]) -> str:
    """`judge`'s one-line summary: the verdicts counted."""
    counts = {v: sum(j["verdict"] == v for j in judgements) for v in ("right", "wrong", None)}
    return (f"judged {len(judgements)} solutions: {counts['right']} right, {counts['wrong']} wrong, "
            f"{counts[None]} no verdict")


_STEP = re.compile(r"Step\s+(\d+)")


def named_step(critique: str) -> int | None:
    """The step a critique blames: the first line that is not a confirmation ('is correct.', or
    ': correct.' / 'matches.' of the other critique styles), after the critic's own solution."""
    lines = critique.splitlines()
    own = [i for i, line in enumerate(lines) if line.startswith("My answer is")]  # solve_first
    for line in lines[own[0] + 1 if own else 0:]:
        if line.strip().endswith(("is correct.", ": correct.", "matches.")) or not line.strip():
            continue
        m = _STEP.search(line)
        return int(m[1]) if m else None
    return None


MIN_PER_CLASS = 10  # fewer right (or wrong) labelled solutions than this: balanced accuracy is flagged


def critic_metrics(solutions: list[dict], judgements: list[dict], seed: int = 0) -> dict:
    labelled = [(s, j) for s, j in zip(solutions, judgements, strict=True) if s.get("correct") is not None]
    pairs = [(s["correct"], j["verdict"]) for s, j in labelled]
    if not pairs:
        raise UserError("eval-critic: no solution has a known correctness ('correct' field)")
    n = len(pairs)
    right = sum(c for c, _ in pairs)
    hit = [v == ("right" if c else "wrong") for c, v in pairs]  # a missing verdict is a miss
    hits = sum(hit)
    tp = sum((not c) and v == "wrong" for c, v in pairs)
    fp = sum(c and v == "wrong" for c, v in pairs)
    fn = sum((not c) and v != "wrong" for c, v in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    y = [c for c, _ in pairs]
    problems = [s.get("problem_id", s["id"]) for s, _ in labelled]  # a problem's solutions resampled together
    majority = Counter(c for c, _ in pairs).most_common(1)[0][0]
    out = {"n": n, "accuracy": hits / n, "accuracy_ci95": list(wilson_ci(hits, n)),
           "balanced_accuracy": float(balanced_accuracy(hit, y)),
           "balanced_accuracy_ci95": bootstrap(lambda w: balanced_accuracy(hit, y, w), n, clusters=problems, seed=seed),
           "wrong_precision": precision, "wrong_recall": recall,
           "wrong_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
           "unparseable_rate": sum(v is None for _, v in pairs) / n, "share_correct": sum(c for c, _ in pairs) / n,
           "constant_baseline": {"verdict": "right" if majority else "wrong",
                                 "accuracy": sum(c is majority for c, _ in pairs) / n, "balanced_accuracy": 0.5}}
    out["unlabelled"] = len(solutions) - n  # no 'correct' label: left out of every metric
    if (few := min(right, n - right)) < MIN_PER_CLASS:
        label = "right" if right == few else "wrong"
        out["imbalance"] = (f"only {few} {label} solution{'s' if few != 1 else ''} of {n}: balanced accuracy "
                            "is unreliable")
    steps = [(s["first_error_step"], named_step(j["critique"])) for s, j in zip(solutions, judgements, strict=True)
             if s.get("first_error_step") and j["verdict"] == "wrong"]
    if steps:
        named = sum(a == b for a, b in steps)
        out["names_first_wrong_step"] = named / len(steps)
        out["names_first_wrong_step_ci95"] = list(wilson_ci(named, len(steps)))
        out["names_first_wrong_step_n"] = len(steps)
    out.update(_where_it_fails(labelled))
    return out


def _where_it_fails(labelled: list[tuple[dict, dict]]) -> dict:
    """Where a critic fails: its false alarms on right solutions, and on wrong ones its recall per
    error kind (the world's exact label, `error_kind`) and how often it flags the solution and
    names its first wrong step, each with a Wilson interval."""
    out = {}
    right = [j["verdict"] == "wrong" for s, j in labelled if s["correct"]]
    if right:
        out["false_alarm_rate"], out["false_alarm_ci95"] = sum(right) / len(right), list(wilson_ci(sum(right),
                                                                                                   len(right)))
    by_kind = defaultdict(list)
    for s, j in labelled:
        if not s["correct"] and s.get("error_kind"):
            by_kind[s["error_kind"]].append(j["verdict"] == "wrong")
    if by_kind:
        out["recall_by_kind"] = {k: {"n": len(v), "recall": sum(v) / len(v), "ci95": list(wilson_ci(sum(v), len(v)))}
                                 for k, v in sorted(by_kind.items())}
    located = [j["verdict"] == "wrong" and named_step(j["critique"]) == s["first_error_step"]
               for s, j in labelled if not s["correct"] and s.get("first_error_step")]
    if located:
        out["first_error_step_accuracy"] = sum(located) / len(located)
        out["first_error_step_ci95"] = list(wilson_ci(sum(located), len(located)))
        out["first_error_step_n"] = len(located)
    return out


def _vote(answers: list[str]) -> str | None:
    answers = [a for a in answers if a is not None]
    return Counter(answers).most_common(1)[0][0] if answers else None


def best_of_n(solutions: list[dict], judgements: list[dict]) -> dict:
    """Accuracy vs N for first-sample, majority, critic-filtered majority and oracle pass@N."""
    groups: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for s, j in zip(solutions, judgements, strict=True):
        if s.get("answer") is not None:
            groups[s["problem_id"]].append((s, j))
    if not groups:
        raise UserError("best-of-N needs solutions with reference answers")
    n_max = min(len(g) for g in groups.values())
    curves: dict[str, list[float]] = {"first": [], "majority": [], "critic_majority": [], "oracle": []}
    for n in range(1, n_max + 1):
        scores = Counter()
        for group in groups.values():
            part = group[:n]
            ref = part[0][0]["answer"]
            answers = [extract_answer(s["solution"]) for s, _ in part]
            def ok(a, ref=ref):
                return a is not None and equivalent(ref, a)[0]

            accepted = [a for a, (_, j) in zip(answers, part, strict=True) if j["verdict"] == "right"]
            scores["first"] += ok(answers[0])
            scores["majority"] += ok(_vote(answers))
            scores["critic_majority"] += ok(_vote(accepted or answers))
            scores["oracle"] += any(s["correct"] for s, _ in part)
        for k in curves:
            curves[k].append(scores[k] / len(groups))
    return {"problems": len(groups), "n": list(range(1, n_max + 1)), **curves}


def run_eval_critic(critic: str | Path, solutions_path: str | Path, out_dir: str | Path,
                    cfg: CriticConfig | None = None, *, vllm=None, overwrite: bool = False) -> dict:
    cfg = cfg or CriticConfig()
    solutions = read_judged(solutions_path, labels=True)  # labels checked before anything is judged
    check_backend(critic, cfg, "critic")
    grouped = all(s.get("problem_id") is not None for s in solutions) and \
        len({s["problem_id"] for s in solutions}) < len(solutions)
    fingerprint = stable_hash(judge_settings(critic, cfg)[0])
    with output_dir(out_dir, "critic-eval", fingerprint=fingerprint, overwrite=overwrite) as (out_dir, _):
        stats: dict = {}
        judgements = run_judge(critic, solutions, out_dir / "judgements.jsonl", cfg, vllm=vllm, stats=stats)
        result = {"critic": str(critic), "solutions": str(Path(solutions_path).resolve()), "config": asdict(cfg),
                  "metrics": critic_metrics(solutions, judgements),
                  "generation": fit_counts(stats)}
        if grouped:
            result["best_of_n"] = best_of_n(solutions, judgements)
            plots.best_of_n(result["best_of_n"], out_dir / "best_of_n.png", f"critic: {Path(str(critic)).name}")
        write_json(out_dir / "critic.json", result)
    return result


def summary_line(result: dict, out: str | Path) -> str:
    """`eval-critic`'s one-line summary of `run_eval_critic`'s result: verdict accuracy, balanced
    accuracy with its interval, the unparseable rate, and what was left out or did not fit."""
    m = result["metrics"]
    left_out = f"; {m['unlabelled']} solutions without a 'correct' label left out" if m["unlabelled"] else ""
    flag = f"; WARNING: {m['imbalance']}" if m.get("imbalance") else ""
    ci = m["balanced_accuracy_ci95"]
    return (f"verdict accuracy {100 * m['accuracy']:.1f}%, balanced {100 * m['balanced_accuracy']:.1f}% "
            f"(CI {100 * ci[0]:.1f}-{100 * ci[1]:.1f}), unparseable {100 * m['unparseable_rate']:.1f}% "
            f"(n={m['n']}{left_out}){flag}{fit_note(result.get('generation', {}))}; details in {out}")
