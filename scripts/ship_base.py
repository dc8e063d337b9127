"""Ship a pretrained world base with critiquelab (maintainers): copy its files into
src/critiquelab/bases/NAME/ with a shipped.json holding the key of the settings it was pretrained from
and the sha256 of its files, so `cached_base_model` takes it for exactly those settings on any machine
(pretrain.shipped) instead of pretraining one whose weights follow the local CPU's kernels.

    .venv/bin/python scripts/ship_base.py --config recipes/demo-fast.yaml --base PATH --name demo-fast
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from critiquelab.config import RunConfig, load_config
from critiquelab.io import read_json, sha256_dir, write_json
from critiquelab.pretrain import SHIPPED, config_key

FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "chat_template.jinja", "critiquelab_pretrain.json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="the recipe whose world/model/pretrain settings built --base")
    p.add_argument("--base", required=True, help="the base: a directory `critiquelab pretrain` or an experiment wrote")
    p.add_argument("--name", required=True)
    a = p.parse_args()
    cfg = load_config(RunConfig, a.config, [])
    record = read_json(Path(a.base) / "critiquelab_pretrain.json")
    if record["model"] != {**record["model"], **vars(cfg.model)}:
        raise SystemExit(f"{a.base} was not pretrained with {a.config}'s model settings")
    out = SHIPPED / a.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in FILES:
        if (Path(a.base) / f).is_file():
            shutil.copy2(Path(a.base) / f, out / f)
    write_json(out / "shipped.json", {
        "key": config_key(cfg.world, cfg.model, cfg.pretrain), "recipe": a.config,
        "sha256": sha256_dir(out, skip=("shipped.json",)), "built_with": record.get("built_with"),
        "machine": record.get("machine"), "stats": record.get("stats")})
    print(f"shipped {a.base} as {out}")


if __name__ == "__main__":
    main()
