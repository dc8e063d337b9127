"""The data regime of one training setting, measured from its files and compared with the paper's
in the report: the share of right noisy solutions, the teacher's error rate, the corrections in its
critiques, and the CFT set's verdict balance and size. Written to `regime.json` by experiment.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from critiquelab.build import every_critique
from critiquelab.config import CritiqueConfig, RunConfig, SampleConfig
from critiquelab.critique import input_hash, parse_verdict
from critiquelab.io import read_jsonl

__all__ = ["regime_stats", "setting_solutions"]


def setting_solutions(data_dir: Path) -> Path:
    """The noisy solutions a training setting was built from: RL's fixed pool."""
    return data_dir.parent / f"{data_dir.name}.solutions.jsonl" if data_dir.name != "all" else \
        data_dir.parent.parent / "solutions.jsonl"


_CORRECTION = re.compile(r"\\boxed\{|correct (final )?answer is|correct steps|should be", re.IGNORECASE)


def _describe_source(s: SampleConfig) -> str:
    if s.generators:
        return f"{len(s.generators)} generators ({', '.join(s.generators)})" + (
            f" on the {s.seed_problem} seed problem" if s.seed_problem else "")
    if s.source == "synthetic":
        return f"the world's error injector (one error in {s.error_rate:.0%} of solutions), not the student"
    if s.source == "import":
        return f"imported from {s.import_path}"
    return (f"model {s.model}" if s.model else "the student's own base model") + f", T={s.temperature:g}"


def _describe_teacher(t: CritiqueConfig) -> str:
    if t.panel:
        return f"a panel of {len(t.panel)} teachers ({', '.join(t.panel)}), every critique counted"
    if t.teacher == "checker":
        return "the exact step checker" + (f", verdict flipped on {t.checker_noise:.0%}" if t.checker_noise else "")
    return f"{t.teacher} model {t.model}"


def regime_stats(data_dir: Path, scfg: SampleConfig, tcfg: CritiqueConfig, cfg: RunConfig) -> dict:
    """The data regime of one training setting, measured from its files: the share of right noisy
    solutions, the teacher's verdicts against the reference grade (its error rate), how many of its
    'wrong' critiques carry a correction, and the CFT set's verdict balance and size."""
    teacher_dir = data_dir.parent
    solutions = read_jsonl(setting_solutions(data_dir))
    graded = [s["correct"] for s in solutions if isinstance(s.get("correct"), bool)]
    critiques = every_critique(teacher_dir / "critique" / "critiques.jsonl")  # every teacher's, of each text
    judged = [(s["correct"], c) for s in solutions if isinstance(s.get("correct"), bool)
              for c in critiques.get((s["id"], input_hash(s)), [])]
    wrong_critiques = [c for _, c in judged if c.get("verdict") == "wrong"]
    cft = read_jsonl(data_dir / "cft.jsonl") if (data_dir / "cft.jsonl").is_file() else []
    verdicts = [parse_verdict(row["completion"][-1]["content"] if isinstance(row["completion"], list)
                              else row["completion"]) for row in cft]
    share = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "solutions": len(solutions), "questions": len({s.get("problem_id") for s in solutions}),
        "share_right": share(graded),
        "written_by": _describe_source(scfg), "teacher": _describe_teacher(tcfg),
        "teacher_error_rate": share([(c.get("verdict") == "right") != ok for ok, c in judged]),
        "corrections_in_wrong_critiques": share([bool(_CORRECTION.search(c.get("critique") or "")) for c in wrong_critiques]),
        "cft_examples": len(cft), "cft_share_wrong": share([v == "wrong" for v in verdicts]),
        "token_budget": cfg.train.token_budget,
    }
