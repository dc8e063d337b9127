"""Dataset exports in the formats people train with, and import of the public CFT layout.

Every export is written by `build` beside `dataset/<variant>.jsonl` (TRL conversational
prompt-completion, always written) and loads unmodified in its tool (`make check-clients` trains
two steps from each with the real tool; docs/formats.md has the settings):

- `messages`: `dataset/messages/<variant>.jsonl`, one `{"messages": [...]}` conversation per row
  (system message only when the row has one): ms-swift (`swift sft --dataset FILE`), and any tool
  reading the OpenAI / ShareGPT-style `messages` layout
- `hf`: `datasets.DatasetDict.save_to_disk` (one split per variant) under `dataset/hf/`, and
- `parquet`: one parquet file per variant under `dataset/parquet/`: both keep the message
  structure (`prompt` and `completion` are lists of `{role, content}`), so TRL's `SFTTrainer`
  applies the model's chat template and trains on the completion only
- `trl_text`: prompt-completion JSONL with plain strings (no chat template: TRL concatenates them)
- `alpaca`: LLaMA-Factory alpaca JSON (instruction / input / output / system, `system` on every row,
  `""` when the row has none) under `dataset/alpaca/<variant>.json` plus `dataset_info.json`

`import_alpaca_cft` reads the WebInstruct-CFT layout (instruction / input / output) from a local
file into CFT prompt-completion rows.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from critiquelab.io import UserError, atomic_write, read_json, read_jsonl, write_json, write_jsonl

__all__ = ["FORMATS", "ALPACA_COLUMNS", "check_formats", "export_all", "to_alpaca", "to_messages",
           "to_conversational", "import_alpaca_cft", "summary_line"]

FORMATS = ("messages", "hf", "parquet", "alpaca", "trl_text")
# dataset_info.json `columns` of every alpaca entry: LLaMA-Factory reads each mapped column from
# every row, so every row carries all of them (`system` too, empty when the row has none).
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}


def check_formats(formats: list[str]) -> None:
    """Raise a one-line UserError for anything `export_all` cannot write (call it before writing)."""
    valid = f"valid: {', '.join(FORMATS)}; the trl JSONL <method>.jsonl is always written"
    if isinstance(formats, str) or not isinstance(formats, list | tuple):
        raise UserError(f"build.exports={formats!r}: expected a list, e.g. [alpaca, messages] ({valid})")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UserError(f"build.exports: unknown {', '.join(map(repr, bad))} ({valid})")


def _messages(msgs: list[dict]) -> list[dict]:
    """Only `role` and `content`, both strings: one schema for every row (Arrow, the tools' checks)."""
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in msgs]


def _split(row: dict) -> tuple[str, str, str]:
    """(system, user, assistant) of a conversational prompt-completion row."""
    system = next((m["content"] for m in row["prompt"] if m["role"] == "system"), "")
    user = "\n\n".join(m["content"] for m in row["prompt"] if m["role"] == "user")
    return system, user, "".join(m["content"] for m in row["completion"])


def _flat(row: dict) -> dict:
    system, user, answer = _split(row)
    return {"prompt": user, "completion": answer, **({"system": system} if system else {})}


def to_conversational(row: dict) -> dict:
    """The TRL conversational prompt-completion row, with only `prompt` and `completion`."""
    return {"prompt": _messages(row["prompt"]), "completion": _messages(row["completion"])}


def to_messages(row: dict) -> dict:
    """One conversation: the prompt's messages (system only if present), then the completion."""
    return {"messages": _messages(row["prompt"]) + _messages(row["completion"])}


def to_alpaca(row: dict) -> dict:
    system, user, answer = _split(row)
    return {"instruction": user, "input": "", "output": answer, "system": system}


def _save_hf(out_dir: Path, data: dict[str, list[dict]]) -> Path:
    """save_to_disk into a temp dir beside `hf/`, then swap it in (the old copy goes only after)."""
    from datasets import Dataset, DatasetDict

    final = out_dir / "hf"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".hf.", suffix=".tmp", dir=out_dir))
    old = None
    try:
        DatasetDict({m: Dataset.from_list(rows) for m, rows in data.items()}).save_to_disk(str(tmp / "hf"))
        if final.exists():
            old = out_dir / f"{tmp.name}.old"
            os.replace(final, old)
        os.replace(tmp / "hf", final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return final


def export_all(out_dir: Path, data: dict[str, list[dict]], formats: list[str]) -> dict:
    """Write each export in `formats` for every variant in `data`; returns {format: [paths]}."""
    check_formats(formats)
    out_dir = Path(out_dir)
    written: dict[str, list[str]] = {}
    if "messages" in formats:
        written["messages"] = [str(out_dir / "messages" / f"{m}.jsonl") for m in data]
        for m, rows in data.items():
            write_jsonl(out_dir / "messages" / f"{m}.jsonl", (to_messages(r) for r in rows))
    if "trl_text" in formats:
        written["trl_text"] = [str(out_dir / "trl_text" / f"{m}.jsonl") for m in data]
        for m, rows in data.items():
            write_jsonl(out_dir / "trl_text" / f"{m}.jsonl", (_flat(r) for r in rows))
    if "hf" in formats or "parquet" in formats:
        conv = {m: [to_conversational(r) for r in rows] for m, rows in data.items()}
        if "hf" in formats:
            written["hf"] = [str(_save_hf(out_dir, conv))]
        if "parquet" in formats:
            from datasets import Dataset

            written["parquet"] = []
            for m, rows in conv.items():
                path = out_dir / "parquet" / f"{m}.parquet"
                with atomic_write(path, "wb") as f:
                    Dataset.from_list(rows).to_parquet(f)
                written["parquet"].append(str(path))
    if "alpaca" in formats:
        info = {}
        for m, rows in data.items():
            with atomic_write(out_dir / "alpaca" / f"{m}.json") as f:
                json.dump([to_alpaca(r) for r in rows], f, ensure_ascii=False, indent=1)
            info[f"critiquelab_{m}"] = {"file_name": f"{m}.json", "formatting": "alpaca",
                                        "columns": dict(ALPACA_COLUMNS)}
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


def summary_line(n: int, out: str | Path) -> str:
    """`build --from-alpaca`'s one-line summary: the CFT examples imported into `out`."""
    return f"imported {n} CFT examples to {out}/cft.jsonl"
