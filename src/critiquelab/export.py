"""Dataset exports in the formats people train with, and import of the public CFT layout.

- `trl` (always written by `build`): conversational prompt-completion JSONL
- `trl_text`: prompt-completion JSONL with plain strings (no chat messages)
- `hf`: `datasets.DatasetDict.save_to_disk` (one split per variant) under `dataset/hf/`
- `parquet`: one parquet file per variant under `dataset/parquet/`
- `alpaca`: LLaMA-Factory alpaca JSON (instruction / input / output / system) under
  `dataset/alpaca/<variant>.json` plus its `dataset_info.json` entries

`import_alpaca_cft` reads the WebInstruct-CFT layout (instruction / input / output) from a local
file into CFT prompt-completion rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from critiquelab.io import UserError, atomic_write, read_json, read_jsonl, write_json, write_jsonl

__all__ = ["FORMATS", "export_all", "to_alpaca", "import_alpaca_cft"]

FORMATS = ("trl_text", "hf", "parquet", "alpaca")


def _split(row: dict) -> tuple[str, str, str]:
    """(system, user, assistant) of a conversational prompt-completion row."""
    system = next((m["content"] for m in row["prompt"] if m["role"] == "system"), "")
    user = "\n\n".join(m["content"] for m in row["prompt"] if m["role"] == "user")
    return system, user, row["completion"][0]["content"]


def _flat(row: dict) -> dict:
    system, user, answer = _split(row)
    return {"prompt": user, "completion": answer, **({"system": system} if system else {})}


def to_alpaca(row: dict) -> dict:
    system, user, answer = _split(row)
    out = {"instruction": user, "input": "", "output": answer}
    if system:
        out["system"] = system
    return out


def export_all(out_dir: Path, data: dict[str, list[dict]], formats: list[str]) -> dict:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"build.exports: unknown {unknown} (valid: {', '.join(FORMATS)}; trl JSONL is always written)")
    written: dict[str, list[str]] = {}
    flat = {m: [_flat(r) for r in rows] for m, rows in data.items()}
    if "trl_text" in formats:
        written["trl_text"] = [str(out_dir / "trl_text" / f"{m}.jsonl") for m in data]
        for m, rows in flat.items():
            write_jsonl(out_dir / "trl_text" / f"{m}.jsonl", rows)
    if "hf" in formats or "parquet" in formats:
        from datasets import Dataset, DatasetDict

        dsd = DatasetDict({m: Dataset.from_list(rows) for m, rows in flat.items()})
        if "hf" in formats:
            import shutil

            tmp = out_dir / "hf.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            dsd.save_to_disk(str(tmp))
            shutil.rmtree(out_dir / "hf", ignore_errors=True)
            tmp.rename(out_dir / "hf")
            written["hf"] = [str(out_dir / "hf")]
        if "parquet" in formats:
            (out_dir / "parquet").mkdir(parents=True, exist_ok=True)
            written["parquet"] = []
            for m, ds in dsd.items():
                path = out_dir / "parquet" / f"{m}.parquet"
                with atomic_write(path, "wb") as f:
                    ds.to_parquet(f)
                written["parquet"].append(str(path))
    if "alpaca" in formats:
        info = {}
        for m, rows in data.items():
            with atomic_write(out_dir / "alpaca" / f"{m}.json") as f:
                json.dump([to_alpaca(r) for r in rows], f, ensure_ascii=False, indent=1)
            info[f"critiquelab_{m}"] = {"file_name": f"{m}.json", "formatting": "alpaca",
                                        "columns": {"prompt": "instruction", "query": "input",
                                                    "response": "output", "system": "system"}}
        write_json(out_dir / "alpaca" / "dataset_info.json", info)
        written["alpaca"] = [str(out_dir / "alpaca")]
    return written


def import_alpaca_cft(path: str | Path, out_path: str | Path) -> int:
    """WebInstruct-CFT style rows (instruction / input / output; JSON list or JSONL) -> CFT rows."""
    path = Path(path)
    rows = read_json(path) if path.suffix == ".json" else read_jsonl(path)
    if not isinstance(rows, list):
        raise UserError(f"{path}: expected a JSON list of records")
    out = []
    for i, r in enumerate(rows, start=1):
        if not isinstance(r, dict) or "output" not in r or not (r.get("instruction") or r.get("input")):
            raise UserError(f"{path}:{i}: expected 'instruction', 'input' and 'output' fields")
        user = "\n\n".join(x for x in (r.get("instruction", "").strip(), r.get("input", "").strip()) if x)
        out.append({"prompt": [{"role": "user", "content": user}],
                    "completion": [{"role": "assistant", "content": r["output"]}]})
    return write_jsonl(out_path, out)
