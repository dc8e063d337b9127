"""The methods of an experiment's grid, one row each: what kind of training it is, what data it needs,
where it starts, whether the report compares it with the others of its setting, and its colour.

Every list and name rule about methods derives from `TABLE`: build's variants and what they need
(build.py), the RL methods and their critique share (rl.py), the grid's checks and waves
(grid.py, experiment.py), the cost estimate's example sizes (costs.py) and the report's order,
comparisons (results.py) and colours (report.py). A new method is one row here plus its data builder (build.py
for a dataset, rl.py for a reward).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KINDS", "TABLE", "Method", "kind_of", "names"]

KINDS = ("base", "sft", "cft", "cgd", "rl")

REFERENCE_SOLUTIONS = ("reference_solution", "reference solutions (`solution` in the problems file)")


@dataclass(frozen=True)
class Method:
    name: str
    kind: str                      # base (no training), sft / cft / cgd (a dataset built by build.py), rl (GRPO, rl.py)
    color: str                     # its colour in every plot
    needs_critiques: bool = False  # its dataset reads the teacher's critiques
    needs_field: tuple[str, str] | None = None  # a field the solutions must carry: (field, what and where from)
    teacher_solves: bool = False   # the teacher also writes its own solutions (a `solve` pass of the critique stage)
    teacher_refines: bool = False  # the teacher also refines each solution from its critique (a `refine` pass)
    critique_share: float | None = None  # rl: the share of critique prompts (None: rl.critique_share, in (0, 1))
    starts_from: str | None = None  # the method whose cell of the same seed and setting it starts from (else the base)
    compared: bool = False         # the report compares it with the other methods of its setting
    vs_best_sft: bool = False      # the report pits it against the best SFT variant of its setting
    loss_panel: str = "SFT: solutions"  # what its training loss is on: its panel of loss.png


# In the report's order: base, SFT, CFT, CGD, RL (a comparison pits a method against those before it).
# cgd (Critique-Guided Distillation, arXiv 2505.11628): (question, the student's own answer, the
# teacher's critique) -> the teacher's refined answer; it is evaluated by solving the bare question.
TABLE: dict[str, Method] = {m.name: m for m in [
    Method("base", "base", "#888888"),
    Method("sft_reference", "sft", "#4c72b0", needs_field=REFERENCE_SOLUTIONS),
    Method("sft_noisy", "sft", "#dd8452"),
    Method("sft_verified", "sft", "#8172b3", needs_critiques=True),
    Method("sft_correct", "sft", "#64b5cd", needs_field=("correct", "reference grades (`answer` in the problems file)")),
    Method("sft_teacher", "sft", "#937860", teacher_solves=True),
    Method("cft", "cft", "#55a868", needs_critiques=True, compared=True, vs_best_sft=True, loss_panel="CFT: critiques"),
    Method("cft_sft_mix", "cft", "#c44e52", needs_critiques=True, needs_field=REFERENCE_SOLUTIONS, compared=True,
           loss_panel="CFT+SFT mix"),
    Method("cgd", "cgd", "#393b79", needs_critiques=True, teacher_refines=True, compared=True, vs_best_sft=True,
           loss_panel="CGD: refined solutions"),
    Method("crl", "rl", "#da8bc3", critique_share=1.0, compared=True),
    Method("cft_crl", "rl", "#8c564b", critique_share=1.0, starts_from="cft", compared=True),
    Method("solve_rl", "rl", "#ccb974", critique_share=0.0, compared=True),
    Method("joint_rl", "rl", "#17becf", compared=True),
]}


def names(*kinds: str) -> tuple[str, ...]:
    """The methods of these kinds, in the table's order."""
    return tuple(m.name for m in TABLE.values() if m.kind in kinds)


def kind_of(name: str) -> str | None:
    """A method's kind; for a name outside the table (a report over eval dirs of a model trained on,
    say, `sft_mine.jsonl`) the naming convention: `sft_*` is SFT, `cft*` is CFT, `cgd*` is CGD."""
    if name in TABLE:
        return TABLE[name].kind
    return "sft" if name.startswith("sft_") else "cft" if name.startswith("cft") else \
        "cgd" if name.startswith("cgd") else None
