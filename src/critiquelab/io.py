"""Files: atomic writes, JSONL with file:line errors, the append-only store, the output-dir
guard, hashing, provenance.

Every stage writes through these helpers, so that
- a crash never leaves a half-written file under its final name (`atomic_write`);
- a resumable store survives any crash: a torn last line is cut off before the next append
  (`Store`);
- a directory critiquelab did not make is never written into, and one it made for something
  else is never replaced without `--overwrite` (`output_dir`);
- bad input is one line naming file:line and the field (`read_jsonl`, `check_rows`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "UserError",
    "Incomplete",
    "Interrupted",
    "REFUSED_STATUS",
    "refusal",
    "refused_hint",
    "served_models",
    "served_context",
    "atomic_write",
    "write_jsonl",
    "write_json",
    "read_jsonl",
    "read_json",
    "read_text",
    "Rows",
    "check_rows",
    "Store",
    "MARKER",
    "output_dir",
    "check_output_dir",
    "read_marker",
    "mark_complete",
    "check_output_file",
    "sha256_file",
    "sha256_dir",
    "stable_hash",
    "provenance",
    "pyplot",
    "save_figure",
]

log = logging.getLogger(__name__)


class UserError(Exception):
    """A problem with the user's input: the CLI prints it as one line, no traceback (exit 2)."""


class Incomplete(Exception):
    """A stage finished but some items failed or are missing; a rerun retries them (exit 3).

    `summary` holds the stage's usual summary, so a caller loses nothing by catching it."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary or {}


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, after the stage put its work in a safe state; the message says what a
    rerun will do (the CLI prints it, exit 130)."""


# HTTP replies that a rerun of the same request cannot change: bad request, key, permission, no
# such model or route, unprocessable settings. (429, 5xx and timeouts are retried instead.)
REFUSED_STATUS = (400, 401, 403, 404, 422)


def refusal(e: BaseException) -> str | None:
    """'HTTP 400: <the server's own message>' for an error reply a rerun cannot fix, else None."""
    status = getattr(e, "status_code", None)
    if status not in REFUSED_STATUS:
        return None
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        body = body.get("message") or body.get("detail") or body.get("error") or body
    if not isinstance(body, str) or not body.strip():
        response = getattr(e, "response", None)
        body = (getattr(response, "text", "") or "").strip() or str(body or e)
    return f"HTTP {status}: {' '.join(body.split())[:300]}"


def _models_listing(base_url: str, api_key: str | None = None) -> list[dict] | None:
    """The entries an OpenAI-compatible endpoint lists at /models (None if it cannot be read)."""
    import urllib.request

    req = urllib.request.Request(base_url.rstrip("/") + "/models",
                                 headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return [m for m in json.loads(r.read())["data"] if isinstance(m, dict)]
    except Exception:  # noqa: BLE001  (only a hint)
        return None


def served_models(base_url: str, api_key: str | None = None) -> list[str] | None:
    """The model ids an OpenAI-compatible endpoint lists at /models (None if it cannot be read)."""
    listing = _models_listing(base_url, api_key)
    return None if listing is None else [m["id"] for m in listing if "id" in m]


def served_context(base_url: str, model: str, api_key: str | None = None) -> int | None:
    """The context (prompt + answer tokens) the endpoint lists for `model` (vLLM: `max_model_len`),
    or None when it lists none."""
    for m in _models_listing(base_url, api_key) or []:
        if m.get("id") == model and isinstance(m.get("max_model_len"), int):
            return m["max_model_len"]
    return None


# How servers word "the prompt does not fit the context": vLLM, transformers serve, OpenAI
_CONTEXT = re.compile(r"context[_ ]length|context window|max[-_ ]model[-_ ]len|prompt has \d+ tokens|"
                      r"(maximum|at most) \d+ tokens|too many tokens|prompt is too long", re.IGNORECASE)


def refused_hint(status: int | None, base_url: str, model_key: str, key_env: str | None = None,
                 api_key: str | None = None, why: str = "", max_tokens_key: str = "max_new_tokens") -> str:
    """What to check after a refusal (`why`: the server's own message, from `refusal`): the prompt's
    length against the server's context, the key (401/403), or the model id the server lists."""
    if _CONTEXT.search(why or ""):
        return (f"the prompt and the answer ({max_tokens_key}) do not fit the served model's context: shorten "
                f"the inputs, lower {max_tokens_key}, or serve the model with a longer context (vLLM: "
                "--max-model-len)")
    if status in (401, 403):
        return f"check the API key in ${key_env}" if key_env else "check the API key"
    served = served_models(base_url, api_key)
    listed = f" (it lists: {', '.join(served[:5])})" if served else ""
    return f"check {model_key}: it must be a model id the server lists at {base_url.rstrip('/')}/models{listed}"


# ---------------------------------------------------------------------------------------------
# Writing


@contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, default=str)
        f.write("\n")


# ---------------------------------------------------------------------------------------------
# Reading: every problem is one line naming the file (and line)


def _decode(raw: bytes, path: Path, line: int | None = None) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = line if line is not None else raw[:e.start].count(b"\n") + 1
        where = f"{path}:{line}"
        raise UserError(f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as UTF-8") from None


def _read_bytes(path: Path, what: str = "file") -> bytes:
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a {what}")
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file; missing, unreadable or non-UTF-8 files are one-line user errors."""
    path = Path(path)
    return _decode(_read_bytes(path, what), path)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


class Rows(list):
    """Rows of a JSONL file with the line number of each (for file:line messages)."""

    def __init__(self, rows=(), lines=(), path: str | Path | None = None):
        super().__init__(rows)
        self.lines = list(lines) or list(range(1, len(self) + 1))
        self.path = path


def read_jsonl(path: str | Path, *, tolerate_torn_tail: bool = False, what: str | None = None) -> Rows:
    """Read a JSONL file; a malformed or non-UTF-8 line raises UserError naming file:line, and so
    does a file without rows when `what` names the rows it must hold ("problems", ...).

    `tolerate_torn_tail` skips an unterminated last line (what a killed appender leaves) instead
    of reporting it; stores repair it before they append (`Store.repair`)."""
    path = Path(path)
    raw = _read_bytes(path)
    parts = raw.split(b"\n")
    rows, lines = [], []
    for i, chunk in enumerate(parts, start=1):
        torn = i == len(parts) and chunk.strip() != b""  # no newline after the last line
        try:
            line = _decode(chunk, path, i)
        except UserError:
            if torn and tolerate_torn_tail:
                continue
            raise
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if torn and tolerate_torn_tail:
                continue
            raise UserError(f"{path}:{i}: malformed JSON line ({e.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{i}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
        lines.append(i)
    if what and not rows:
        raise UserError(f"{path}: no {what} (the file is empty)")
    return Rows(rows, lines, path)


_TYPE_NAMES = {str: "text", int: "an integer", float: "a number", bool: "true/false", list: "a list",
               dict: "an object", type(None): "null"}


def _type_ok(value: Any, types: tuple) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def check_rows(rows: list[dict], where: str | Path, required: dict[str, Any], optional: dict[str, Any] | None = None,
               unique: str | None = None, fix: str = "") -> None:
    """Each row has the `required` fields (not null) with the given type(s), and the `optional`
    ones, when present and not null, too; `unique` names a field no two rows may share. The first
    problem is a UserError naming file:line, the field and what was expected."""
    lines = getattr(rows, "lines", None) or list(range(1, len(rows) + 1))
    seen: dict[Any, int] = {}
    hint = f"; {fix}" if fix else ""
    for row, line in zip(rows, lines, strict=True):
        for name, types in [*((k, (t, True)) for k, t in required.items()),
                            *((k, (t, False)) for k, t in (optional or {}).items())]:
            types, needed = types
            types = types if isinstance(types, tuple) else (types,)
            value = row.get(name)
            if value is None:
                if needed:
                    raise UserError(f"{where}:{line}: missing field {name!r}{hint}")
                continue
            if not _type_ok(value, types):
                want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
                raise UserError(f"{where}:{line}: field {name!r} must be {want}, got {json.dumps(value)[:60]}")
        if unique is not None:
            key = row.get(unique)
            if key in seen:
                raise UserError(f"{where}:{line}: duplicate {unique} {json.dumps(key)} (also on line {seen[key]}); "
                                f"every row needs its own {unique}")
            seen[key] = line


# ---------------------------------------------------------------------------------------------
# The append-only store


class Store:
    """An append-only JSONL file of records keyed by `key`; the latest record per key wins.

    Crash safety: records are appended as whole lines, flushed after each one and fsynced every
    `fsync_every` and on close. A kill can leave at most one torn (unterminated) last line;
    readers skip it and `append` / `writer` cut it off first, so the next record never lands on
    a fragment. A rerun skips keys already done, so nothing is lost or duplicated.

    Used by every resumable stage: sample, critique, eval, judge.
    """

    def __init__(self, path: str | Path, fsync_every: int = 64):
        self.path = Path(path)
        self.fsync_every = fsync_every

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        rows = read_jsonl(self.path, tolerate_torn_tail=True)
        for row, line in zip(rows, rows.lines, strict=True):
            if "key" not in row:
                raise UserError(f"{self.path}:{line}: not a critiquelab store (rows have no 'key'); "
                                "choose another output or move the file away")
        return rows

    def read(self) -> dict[str, dict]:
        """key -> latest record."""
        return {r["key"]: r for r in self.rows()}

    def repair(self) -> int:
        """Cut an unterminated last line (a killed writer's); return the bytes removed."""
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as f:  # never cut (or append to) a file that is not a store
            first = f.readline()
        if first.strip() and not _store_line(first):
            raise UserError(f"{self.path}:1: not a critiquelab store (rows have no 'key'); choose another "
                            "output or move the file away")
        with open(self.path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            pos, tail = size, b""
            while pos > 0:  # find the last newline, reading backwards in blocks
                step = min(1 << 16, pos)
                f.seek(pos - step)
                tail = f.read(step) + tail
                i = tail.rfind(b"\n")
                if i >= 0:
                    keep = pos - step + i + 1
                    break
                pos -= step
            else:
                keep = 0
            if keep < size:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
                log.warning("%s: removed a torn last line (%d bytes) left by an interrupted run", self.path,
                            size - keep)
            return size - keep

    @contextmanager
    def writer(self) -> Iterator[Any]:
        """`w(record)` appends one record (`key` first); the file is repaired first (which refuses a
        file that is not a store) and fsynced on exit."""
        self.repair()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a", encoding="utf-8")
        count = [0]

        def write(record: dict) -> None:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()  # in the OS after every record: a killed process loses nothing written
            count[0] += 1
            if count[0] % self.fsync_every == 0:
                os.fsync(f.fileno())  # on disk regularly (fsync costs milliseconds)

        try:
            yield write
        finally:
            f.flush()
            os.fsync(f.fileno())
            f.close()

    def append(self, records: Iterable[dict]) -> None:
        with self.writer() as write:
            for r in records:
                write(r)


def _store_line(line: bytes) -> bool:
    """A store's first line: a JSON object with a `key` or, cut short by a kill, the start of one
    (every writer puts `key` first)."""
    if not line.endswith(b"\n"):
        return line.startswith(b'{"key": ')
    try:
        row = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(row, dict) and "key" in row


# ---------------------------------------------------------------------------------------------
# Output directories: never write into (or delete) what critiquelab did not make

MARKER = ".critiquelab.json"


def read_marker(path: str | Path) -> dict | None:
    p = Path(path) / MARKER
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _write_marker(path: Path, marker: dict) -> None:
    write_json(path / MARKER, marker)


def mark_complete(path: str | Path, **extra: Any) -> None:
    """Record in the directory's marker that its work finished."""
    path = Path(path)
    _write_marker(path, {**(read_marker(path) or {}), "complete": True, "completed": time.time(), **extra})


def _clear(path: Path) -> None:
    for p in path.iterdir():
        if p.name != MARKER:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _probe(path: Path, label: str) -> None:
    try:
        probe = path / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{path}: {label} is not writable ({e.strerror})") from None


def _refuse(path: Path, kind: str, marker: dict | None, contents: list[str], fingerprint: str | None,
            overwrite: bool, label: str) -> None:
    """The rules by which `output_dir` refuses an existing directory."""
    if marker is None and contents:
        raise UserError(f"{label} {path}: the directory is not empty and was not made by critiquelab; "
                        "refusing to write into it (choose a new or empty directory)")
    if marker is not None:
        if marker.get("kind") != kind:
            raise UserError(f"{label} {path}: holds a critiquelab {marker.get('kind')!r} output, not {kind!r}; "
                            "choose another directory")
        if fingerprint is not None and marker.get("fingerprint") not in (None, fingerprint) and contents \
                and not overwrite:
            raise UserError(f"{label} {path}: holds a {kind} made with other inputs or settings; pass "
                            "--overwrite to replace it, or choose another directory")


def check_output_dir(path: str | Path, kind: str, *, fingerprint: str | None = None, overwrite: bool = False,
                     label: str = "--out") -> None:
    """Refuse now what `output_dir` would refuse, creating and writing nothing: for a command that
    writes elsewhere first (the report, then its published copy)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{label} {path}: exists and is not a directory")
    if path.is_dir():
        contents = [p.name for p in path.iterdir() if p.name != MARKER]
        _refuse(path, kind, read_marker(path), contents, fingerprint, overwrite, label)
    _writable_ancestor(path if path.is_dir() else path.parent, path, label)


def _writable_ancestor(start: Path, path: Path, label: str) -> None:
    """The nearest existing directory at or above `start` must be a writable directory."""
    existing = start
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{label} {path}: cannot create the directory ({existing} is not a directory)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{label} {path}: {existing} is not writable")


@contextmanager
def output_dir(path: str | Path, kind: str, *, fingerprint: str | None = None, overwrite: bool = False,
               label: str = "--out") -> Iterator[tuple[Path, str]]:
    """Claim `path` for an output of `kind` before any compute; yield (path, state).

    - absent or empty: created and marked (state "new");
    - marked with the same kind and fingerprint: kept, so the stage resumes (state "resume";
      "done" when the marker says the work finished);
    - marked with the same kind but other settings: refused, or emptied with `overwrite`;
    - marked with another kind, not a directory, not writable, or holding files critiquelab did
      not make: refused, always.
    If the block fails before anything but the marker was written, a directory this call created
    is removed again, so a bad input leaves nothing behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{label} {path}: exists and is not a directory")
    created = not path.exists()
    if created:
        try:
            path.mkdir(parents=True)
        except OSError as e:
            raise UserError(f"{label} {path}: cannot create the directory ({e.strerror})") from None
    marker = read_marker(path)
    contents = [p.name for p in path.iterdir() if p.name != MARKER]
    state = "new"
    _refuse(path, kind, marker, contents, fingerprint, overwrite, label)
    if marker is not None and contents:  # ours, of this kind (`_refuse` saw to the rest)
        if overwrite:
            log.warning("%s: replacing the earlier %s (--overwrite)", path, kind)
            _clear(path)
            marker = None
        else:
            state = "done" if marker.get("complete") else "resume"
    _probe(path, label)
    if marker is None or marker.get("fingerprint") != fingerprint:
        _write_marker(path, {"kind": kind, "fingerprint": fingerprint, "complete": False, "created": time.time(),
                             "critiquelab": _version("critiquelab")})
    try:
        yield path, state
    except BaseException:
        if created and all(p.name == MARKER for p in path.iterdir()):
            shutil.rmtree(path, ignore_errors=True)
        raise


def check_output_file(path: str | Path, label: str = "--out") -> Path:
    """A file output: its directory exists (or can be made) and is writable, and the path is not a
    directory. Whether an existing file may be replaced is the stage's decision."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{label} {path}: is a directory, expected a file path")
    _writable_ancestor(path.parent, path, label)
    return path


# ---------------------------------------------------------------------------------------------
# Hashes and provenance


def cache_dir() -> Path:
    """critiquelab's cache (pretrained bases, converted GGUF models): $CRITIQUELAB_CACHE or ~/.cache/critiquelab."""
    return Path(os.environ.get("CRITIQUELAB_CACHE", Path.home() / ".cache" / "critiquelab"))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_dir(path: str | Path, skip: tuple[str, ...] = ()) -> str:
    """Hash of every file's relative name and content under `path` (the marker and `skip` left out)."""
    h = hashlib.sha256()
    root = Path(path)
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MARKER and p.name not in skip and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode())
            h.update(sha256_file(p).encode())
    return h.hexdigest()


def stable_hash(obj: Any, n: int = 12) -> str:
    """Short hash of a JSON-able object (key order independent)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance() -> dict:
    """Git commit + dirty flag, package versions, hardware (the CPU and the kernels torch runs on it):
    what a number needs beside it."""
    versions = {pkg: _version(pkg) for pkg in ["critiquelab", "torch", "transformers", "trl", "peft",
                                                "accelerate", "datasets", "tokenizers", "math-verify", "openai"]}
    status = _git("status", "--porcelain", "--untracked-files=no")
    try:
        import torch

        threads = torch.get_num_threads()
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a dependency
        threads, cuda = None, None
    from critiquelab.machine import cpu_facts

    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        **cpu_facts(),  # the CPU, torch's kernels for it (cpu_capability), the BLAS, kernel env settings
        "gpu": cuda,
        "versions": versions,
    }


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Save a figure as PNG through a temp file (never a half-written image), then close it."""
    tmp = path.with_suffix(".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    pyplot().close(fig)
    tmp.replace(path)
