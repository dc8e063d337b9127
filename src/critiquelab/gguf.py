"""GGUF checkpoints as models: a `.gguf` file (or a directory holding one) is converted once into an
ordinary Hugging Face directory in the critiquelab cache, keyed by the file's sha256.

transformers reads GGUF (`from_pretrained(dir, gguf_file=NAME)`, with the `gguf` package) by
dequantizing every tensor, but a model loaded that way refuses `save_pretrained`, and vLLM's CPU
build does not read GGUF at all. So every stage takes the converted directory instead: fp32
safetensors, the tokenizer with its chat template, the generation config (eos and pad from the
file), and `critiquelab_gguf.json` naming the source file, its sha256, its architecture and
quantisation. `llm.check_model` calls `resolve` for every model a stage is given, so a GGUF path
works wherever a model directory does; the first use converts (about a minute for a 135M model on
2 CPU cores), later ones reuse the cache.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

from critiquelab.io import UserError, cache_dir, read_json, sha256_file, write_json

log = logging.getLogger(__name__)

__all__ = ["find_gguf", "resolve", "convert", "RECORD"]

RECORD = "critiquelab_gguf.json"
# llama.cpp's general.file_type numbers (gguf.LlamaFileType) for the names users know
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}


def find_gguf(name: str | Path, label: str = "model") -> Path | None:
    """The GGUF file `name` stands for: a `.gguf` file, or a directory without config.json that holds
    exactly one (None: not a GGUF model)."""
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise UserError(f"{label}={name}: no such GGUF file")
        return path
    if path.is_dir() and not (path / "config.json").is_file():
        found = sorted(path.glob("*.gguf"))
        if len(found) > 1:
            raise UserError(f"{label}={name}: the directory holds {len(found)} GGUF files "
                            f"({', '.join(p.name for p in found[:4])}); give one of them as the model")
        return found[0] if found else None
    return None


def _metadata(path: Path, label: str) -> dict:
    """Architecture and quantisation from the file's header (fast: the tensors are not read)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise UserError(f"{label}={path}: reading GGUF files needs the `gguf` package "
                        "(pip install gguf, or pip install 'critiquelab[gguf]')") from None
    try:
        fields = GGUFReader(str(path)).fields
    except Exception as e:  # noqa: BLE001  (not a GGUF file, truncated, ...)
        raise UserError(f"{label}={path}: not a readable GGUF file ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:160]})") from None

    def field(key):
        return fields[key].contents() if key in fields else None

    file_type = field("general.file_type")
    return {"architecture": field("general.architecture"), "name": field("general.name"),
            "license": field("general.license"),
            "quantization": FILE_TYPES.get(file_type, str(file_type)) if file_type is not None else None}


@cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # (size and mtime: a changed file is hashed again)
    return sha256_file(path)


def resolve(name: str | Path, label: str = "model") -> str | None:
    """The converted directory for a GGUF model (converting it on first use); None when `name` is
    not a GGUF model."""
    path = find_gguf(name, label)
    if path is None:
        return None
    stat = path.stat()
    digest = _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    out = cache_dir() / "models" / f"gguf-{digest[:16]}"
    if (out / RECORD).is_file() and (out / "config.json").is_file():
        return str(out)
    convert(path, out, digest, label)
    return str(out)


def convert(path: Path, out: Path, digest: str, label: str = "model") -> None:
    """Dequantize `path` with transformers and write it as a plain HF directory at `out`, atomically
    (a temporary directory beside it, renamed when complete; a parallel conversion's result is kept)."""
    meta = _metadata(path, label)
    log.info("%s: converting GGUF %s (%s, %s) once into %s", label, path, meta["architecture"],
             meta["quantization"], out)
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001  (an architecture or quantisation transformers cannot dequantize)
        raise UserError(f"{label}={path}: transformers {transformers.__version__} cannot load this GGUF "
                        f"(architecture {meta['architecture']}, quantisation {meta['quantization']}): "
                        f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # (the reason save_pretrained refuses: the weights are now plain fp32)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    for key in ("eos_token_id", "pad_token_id", "bos_token_id"):  # the file's special tokens, for generate
        if getattr(model.generation_config, key, None) is None and getattr(tokenizer, key, None) is not None:
            setattr(model.generation_config, key, getattr(tokenizer, key))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / RECORD, {"source": str(path.resolve()), "sha256": digest, **meta,
                                  "transformers": transformers.__version__, "dtype": "float32"})
        try:
            os.rename(tmp, out)
        except OSError:  # another process converted the same file meanwhile: keep its result
            if not (out / RECORD).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def record(model_dir: str | Path) -> dict | None:
    """What a converted directory was made from (None: not one)."""
    p = Path(model_dir) / RECORD
    return read_json(p) if p.is_file() else None


def note(*models: str | Path | None) -> str:
    """For a stage's summary line: the converted directory each GGUF model among `models` ran as."""
    seen = []
    for m in models:
        if m and (d := resolve(m)) is not None and d not in seen:
            seen.append(d)
    return "".join(f"; model {Path(d).name} in {Path(d).parent} (converted from GGUF)" for d in seen)
