"""Cross-setting comparisons the per-setting report does not make (docs/results/one-shot-cft/PROTOCOL.md):
one-shot CFT (main run, medium seed, 10 generators) against full CFT and against each ablation, paired
over the same 1,000 world test items (an item's score: its mean correctness over the 3 seeds).

    python docs/results/one-shot-cft/compare.py runs/one-shot runs/one-shot-ablations > docs/results/one-shot-cft/compare.json
"""

import json
import sys
from pathlib import Path

from critiquelab.results import item_table, load_cells, paired_comparison


def per_item(run: Path, method: str, source: str) -> dict:
    table = item_table(run, load_cells(run))
    seeds = next(v for k, v in table.items() if k[0] == method and k[2] == source and k[-1] == "world")
    return {i: sum(s[i] for s in seeds) / len(seeds) for i in seeds[0]}


main, ablations = Path(sys.argv[1]), Path(sys.argv[2])
one_shot = per_item(main, "cft", "one_shot")
others = {"full CFT (3,000 questions)": per_item(main, "cft", "full"),
          "one-shot CFT, easy seed": per_item(ablations, "cft", "easy"),
          "one-shot CFT, hard seed": per_item(ablations, "cft", "hard"),
          "one-shot CFT, 1 generator": per_item(ablations, "cft", "one_generator")}
out = {}
for name, other in others.items():
    ids = sorted(one_shot)
    out[f"one-shot CFT (medium, 10 generators) - {name}"] = paired_comparison(
        [one_shot[i] for i in ids], [other[i] for i in ids])
print(json.dumps(out, indent=2))
