"""The grader as it was at a given commit (default cf35938, before issue 34), loaded beside today's.

`old_modules()` reads that commit's grading.py and answers.py with `git show` and runs them as
the modules `critiquelab_old.grading` / `critiquelab_old.answers` (today's sources.py serves
both: what they import from it has not changed), for side-by-side comparisons.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

BEFORE = "cf35938"
ROOT = Path(__file__).resolve().parents[1]


def old_modules(commit: str = BEFORE) -> tuple[types.ModuleType, types.ModuleType]:
    package = sys.modules.setdefault("critiquelab_old", types.ModuleType("critiquelab_old"))
    package.__path__ = []
    out = []
    for name in ("grading", "answers"):
        full = f"critiquelab_old.{name}"
        if full not in sys.modules:
            source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:src/critiquelab/{name}.py"],
                                    check=True, capture_output=True, text=True).stdout
            module = types.ModuleType(full)
            module.__file__ = f"{commit}:src/critiquelab/{name}.py"
            sys.modules[full] = module
            exec(compile(source.replace("critiquelab.grading", "critiquelab_old.grading"), module.__file__, "exec"),
                 module.__dict__)
        out.append(sys.modules[full])
    return out[0], out[1]
