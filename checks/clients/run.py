"""`make check-clients`: do critiquelab's exports load unmodified, masked, in the tools people train with?

1. Installs LLaMA-Factory and ms-swift each in its own venv under runs/clients/ (they pin other
   torch / transformers / trl versions than critiquelab), with the CPU `torch==2.13.0`; a venv whose
   pins are unchanged is reused.
2. Builds a tiny dataset with critiquelab itself (make_data.py: world, from-scratch Qwen2 base,
   synthetic solutions, checker critiques, build with every export).
3. Per tool (check_llamafactory.py, check_swift.py, check_trl.py): the tool's own preprocessing of
   the export must give the model's chat-template rendering of every row with the prompt masked
   and the completion trained, a control with the wrong settings must be caught, and two CPU
   training steps must log a finite loss. Training runs are offline (HF_HUB_OFFLINE=1, a guard
   that fails every non-loopback name lookup) and single-process.

Prints the versions that passed; exits 1 on any failure. Logs: runs/clients/logs/, results:
runs/clients/results.json.

    .venv/bin/python checks/clients/run.py [--python python3.11] [--only llamafactory,swift,trl]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ROOT = REPO / "runs" / "clients"
TORCH = "torch==2.13.0"  # the CPU wheel in the local wheelhouse; an unpinned torch pulls CUDA

# What each tool resolved to here, pinned so the check is repeatable.
TOOLS = {
    "llamafactory": {
        "name": "LLaMA-Factory",
        "pins": [TORCH, "llamafactory==0.9.5", "transformers==5.6.0", "datasets==4.0.0", "trl==0.24.0",
                 "peft==0.18.1", "accelerate==1.11.0"],
        "script": "check_llamafactory.py",
    },
    "swift": {
        "name": "ms-swift",
        "pins": [TORCH, "ms-swift==4.6.0", "transformers==5.19.0", "datasets==4.8.4", "trl==0.29.1",
                 "peft==0.20.0", "accelerate==1.15.0"],
        "script": "check_swift.py",
    },
}
FIX_VERSION = 1  # bump when the post-install fixes below change


def log(msg: str) -> None:
    print(f"[check-clients] {msg}", flush=True)


def run(cmd: list[str], logfile: Path, timeout: int, env: dict | None = None) -> subprocess.CompletedProcess:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "a", encoding="utf-8") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, env=env, cwd=REPO)


def cpu_only_fixes(venv: Path, logfile: Path) -> None:
    """LLaMA-Factory requires torchvision and torchaudio; PyPI only has their CUDA builds, whose
    compiled ops cannot load against the CPU torch (`operator torchvision::nms does not exist`,
    `libc10_cuda.so` not found), which breaks `import transformers` models and LLaMA-Factory's
    top-level `import torchaudio`. Neither is used for text SFT: torchvision is removed (transformers
    then skips it) and torchaudio's CUDA extension libraries are removed (it imports as pure Python)."""
    py = venv / "bin" / "python"
    run([str(py), "-m", "pip", "uninstall", "-y", "-q", "torchvision"], logfile, 300)
    code = ("import importlib.util, pathlib\n"
            "s = importlib.util.find_spec('torchaudio')\n"
            "d = pathlib.Path(s.origin).parent / 'lib' if s else None\n"
            "[p.unlink() for p in (d.glob('*.so') if d else [])]\n"
            "print('removed torchaudio CUDA extension' if d else 'torchaudio not installed')\n")
    run([str(py), "-c", code], logfile, 300)


def setup_venv(tool: str, python: str) -> Path:
    spec = TOOLS[tool]
    venv = ROOT / f"venv-{tool}"
    stamp = venv / ".check-clients-pins"
    want = json.dumps({"pins": spec["pins"], "fixes": FIX_VERSION})
    logfile = ROOT / "logs" / f"install-{tool}.log"
    if stamp.is_file() and stamp.read_text() == want:
        log(f"{spec['name']}: reusing {venv.relative_to(REPO)} ({', '.join(spec['pins'][1:3])})")
        return venv
    log(f"{spec['name']}: installing {' '.join(spec['pins'])} into {venv.relative_to(REPO)} "
        f"(a few minutes; log {logfile.relative_to(REPO)})")
    shutil.rmtree(venv, ignore_errors=True)
    logfile.unlink(missing_ok=True)
    t0 = time.time()
    for cmd in ([python, "-m", "venv", str(venv)],
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *spec["pins"]]):
        if run(cmd, logfile, 3600).returncode != 0:
            raise SystemExit(f"[check-clients] FAIL: installing {spec['name']} failed, see {logfile}")
    if tool == "llamafactory":
        cpu_only_fixes(venv, logfile)
    stamp.write_text(want)
    log(f"{spec['name']}: installed in {time.time() - t0:.0f} s")
    return venv


def check_env() -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true",
           "PYTHONPATH": os.pathsep.join([str(HERE / "netguard"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    for k in ("NPROC_PER_NODE", "FORCE_TORCHRUN", "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR"):
        env.pop(k, None)  # one process per tool: no torchrun, no sockets
    return env


def run_check(tool: str, python: Path, data: Path) -> dict:
    script = {"trl": "check_trl.py", **{k: v["script"] for k, v in TOOLS.items()}}[tool]
    logfile = ROOT / "logs" / f"{tool}.log"
    logfile.unlink(missing_ok=True)
    cmd = [str(python), str(HERE / script), "--data", str(data / "dataset"), "--model", str(data / "base"),
           "--work", str(ROOT / "work" / tool)]
    t0 = time.time()
    try:
        proc = run(cmd, logfile, 1800, env=check_env())
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    text = logfile.read_text(errors="replace")
    for extra in (ROOT / "work" / tool).glob("train.log"):
        text += extra.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("CHECK_RESULT ")]
    res = json.loads(lines[-1][len("CHECK_RESULT "):]) if lines else {"tool": tool, "ok": False}
    if not lines:  # the check itself crashed: its last exception line says why
        errors = [line for line in text.splitlines() if re.match(r"^[\w.]*(Error|Exception)\b", line)]
        res["error"] = errors[-1] if errors else f"no result (exit {rc})"
    res["rc"] = rc
    res["network_attempts_blocked"] = sum(line.startswith("NETGUARD blocked") for line in text.splitlines())
    res["wall_seconds"] = round(time.time() - t0, 1)
    res["log"] = str(logfile.relative_to(REPO))
    res["ok"] = bool(res.get("ok")) and rc == 0
    return res


def masking_line(masking: dict) -> str:
    n = sum(m["examples"] for m in masking.values())
    bad = sum(m["bad"] for m in masking.values())
    p = sum(m["masked_prompt_tokens"] for m in masking.values())
    c = sum(m["trained_completion_tokens"] for m in masking.values())
    verdict = "masked" if all(m["ok"] for m in masking.values()) else "NOT MASKED"
    return (f"{verdict}: {n - bad}/{n} examples of {len(masking)} sets match the chat template with "
            f"{p} prompt tokens at -100 and {c} completion tokens trained")


def summary(res: dict) -> list[str]:
    tool = res.get("tool", "?")
    head = f"{'PASS' if res['ok'] else 'FAIL'} {tool} {res.get('version', '?')}"
    out = [head]
    if "error" in res:
        out.append(f"  error: {res['error']}")
    if tool == "trl":
        for r in res.get("runs", []):
            line = f"  {r['export']}: {masking_line({'x': r['masking']})}"
            if "train" in r:
                line += f"; loss {', '.join(f'{x:.4f}' for x in r['train']['losses'])} ({r['train']['steps']} steps)"
            out.append(line)
        ctl = res.get("control_trl_text_without_chat_template", {})
    else:
        if "export" in res:
            out.append(f"  export {res['export']} with {res['settings']}")
        if "masking" in res:
            out.append(f"  {masking_line(res['masking'])}")
            for name, m in res["masking"].items():
                if not m["ok"]:
                    out.append(f"    {name}: {m['first_error']}")
        tr = res.get("train", {})
        if tr:
            out.append(f"  train: exit {tr['rc']}, loss {', '.join(f'{x:.4f}' for x in tr['losses'])} "
                       f"({tr['steps']} steps, finite: {tr['finite']})")
        ctl = next((v for k, v in res.items() if k.startswith("control")), {})
    if ctl:
        out.append(f"  control (wrong settings) caught: {ctl.get('caught')}"
                   + (f" -- {ctl['first_error'][:110]}" if ctl.get("first_error") else ""))
    out.append(f"  network lookups blocked: {res.get('network_attempts_blocked')}; "
               f"{res.get('wall_seconds')} s; log {res.get('log')}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", default="python3.11", help="interpreter for the tools' venvs")
    p.add_argument("--only", default="llamafactory,swift,trl")
    a = p.parse_args()
    only = [t.strip() for t in a.only.split(",") if t.strip()]
    t_start = time.time()
    ROOT.mkdir(parents=True, exist_ok=True)
    pythons = {"trl": Path(sys.executable)}
    for tool in TOOLS:
        if tool in only:
            pythons[tool] = setup_venv(tool, a.python) / "bin" / "python"

    data = ROOT / "data"
    log(f"building the tiny dataset with critiquelab ({data.relative_to(REPO)})")
    t0 = time.time()
    if run([sys.executable, str(HERE / "make_data.py"), str(data)], ROOT / "logs" / "data.log", 1800,
           env={**os.environ, "HF_HUB_OFFLINE": "1"}).returncode != 0:
        log(f"FAIL: building the dataset failed, see {ROOT / 'logs' / 'data.log'}")
        return 1
    log(f"dataset built in {time.time() - t0:.0f} s")

    results = []
    for tool in only:
        log(f"checking {tool} ...")
        results.append(run_check(tool, pythons[tool], data))
        for line in summary(results[-1]):
            print("  " + line, flush=True)
    (ROOT / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    passed = [f"{r['tool']} {r.get('version', '?')}" for r in results if r["ok"]]
    failed = [r.get("tool", "?") for r in results if not r["ok"]]
    print(f"check-clients: passed: {', '.join(passed) or 'none'}"
          + (f"; FAILED: {', '.join(failed)}" if failed else "")
          + f" ({time.time() - t_start:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
