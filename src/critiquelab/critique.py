"""Critiques of candidate solutions by a teacher. For now the teacher is the world's exact
step checker (offline, exact); API and local-model teachers plug in behind the same function.

Input: `solutions.jsonl` (from `sample`). Output: `critiques.jsonl`, one row per solution:
`id`, `problem_id`, `critique`, `verdict` (right / wrong / None when unparseable), `teacher`,
`error_step`, `error_kind`.

    critiquelab critique --input runs/demo/solutions.jsonl --out runs/demo/critiques.jsonl
"""

from __future__ import annotations

import re
from pathlib import Path

from critiquelab.config import CritiqueConfig
from critiquelab.io import UserError, read_jsonl, write_jsonl
from critiquelab.world import check

__all__ = ["parse_verdict", "run_critique"]

_VERDICT = re.compile(r"Conclusion:\s*\**\s*(right|wrong|correct|incorrect)\b", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """'right' / 'wrong' from the last `Conclusion: ...`; None when there is none (never guessed)."""
    found = _VERDICT.findall(text or "")
    if not found:
        return None
    v = found[-1].lower()
    return "right" if v in ("right", "correct") else "wrong"


def run_critique(solutions_path: str | Path, out_path: str | Path, cfg: CritiqueConfig) -> dict:
    if cfg.teacher != "checker":
        raise UserError(f"critique.teacher={cfg.teacher!r}: only 'checker' (the world's exact checker) so far")
    rows = read_jsonl(solutions_path)
    out = []
    for i, r in enumerate(rows, start=1):
        if "steps" not in r or "start" not in r:
            raise UserError(f"{solutions_path}:{i}: the checker teacher needs world problems ('start', 'steps')")
        res = check(r, r["solution"])
        out.append({"id": r["id"], "problem_id": r["problem_id"], "critique": res.critique,
                    "verdict": parse_verdict(res.critique), "teacher": cfg.teacher,
                    "error_step": res.error_step, "error_kind": res.error_kind})
    write_jsonl(out_path, out)
    right = sum(c["verdict"] == "right" for c in out)
    return {"critiques": len(out), "right": right, "wrong": len(out) - right}
