"""`critiquelab view` at the paper's scale: 50K critiqued solutions open and filter in a real browser
(target: both within 2 s, headless Chromium on this machine).

Builds a solutions file and a critique store of `--rows` synthetic rows (one solution per question,
as in WebInstruct-CFT's 50K) with the lengths of the paper's data: a question of about 60 tokens, an
answer of about 300 written as steps, a GPT-4o-style critique of about 450 that goes over each step
and ends `Conclusion: right/wrong [END]`: 45% of the answers right, the teacher's verdicts 56% right /
44% wrong, a fifth of them disagreeing with the label (../shared/PAPER.md). The text is not a few templates repeated (which gzip would squeeze to
nothing): each row strings together sentences of GSM8K's train answers and questions with their
numbers drawn anew, so the page compresses about as real math text does. Without the shared
benchmarks folder a random word list stands in (recorded in the JSON).

Then `critiquelab view SOLUTIONS STORE --out page.html` (timed), and `--rounds` rounds in a fresh
headless Chromium each (file:// only, no network), measured from Python through selenium:
- open: `driver.get` to the page's data decoded and its first page of 50 cards rendered and painted
  (`body[data-ready]`, then one animation frame), in a new browser, then once more in the same one;
- filter: a click on a facet chip (verdict: wrong) or on a cell of the confusion table (wrong verdicts
  of right answers), to the counts updated and the first page of matching cards shown with their texts
  (`body[data-drawn]`) and painted; the two alternate which goes first from round to round;
- search (not part of the target): typing a word into the search box, to the count updated: the
  first search reads every text block (from the box's focus on) and builds its index, after the
  box's 150 ms debounce.
Prints the median, min and max of each and writes JSON with the page's size broken down, the host's
load (os.getloadavg) before and after, Chromium's version and critiquelab's provenance.

    .venv/bin/python benchmarks/view_scale.py [--rows 50000] [--rounds 5] [--out benchmarks/results/view_scale.json]

Needs Debian's chromium and chromium-driver and selenium (the `browser` extra).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from critiquelab.io import provenance, read_jsonl, write_jsonl
from critiquelab.sources import benchmarks_dir

TARGET_S = 2.0
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000"]
KINDS = ["arithmetic", "wrong operation", "unit conversion", "misread condition", "sign", "rounding",
         "missing case", "circular"]
FILLER = ("the total number of items each group so we get then after that which means remaining cost per "
          "hour week day price half twice more less than left altogether first second third sum product "
          "difference ratio percent of equals divided multiplied added subtracted therefore").split()


# ---------------------------------------------------------------------------------------------
# The synthetic data


class Text:
    """Sentences of real math text (GSM8K train) with fresh numbers, or random filler words."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        train = benchmarks_dir() / "gsm8k" / "train.jsonl"
        self.source = None
        self.sentences, self.questions = [], []
        if train.is_file():
            for r in read_jsonl(train):
                answer = re.sub(r"<<[^>]*>>", "", r["answer"]).split("\n####")[0]
                self.sentences += [s.strip() for s in answer.split("\n") if len(s.strip()) > 20]
                self.questions.append(r["question"])
            self.source = str(train)

    def _numbers(self, s: str) -> str:
        return re.sub(r"\d+", lambda m: str(self.rng.randint(2, 10 ** min(4, len(m[0]) + 1))), s)

    def sentence(self) -> str:
        if self.sentences:
            return self._numbers(self.rng.choice(self.sentences))
        n = self.rng.randint(8, 16)
        words = [self.rng.choice(FILLER) if self.rng.random() < 0.8 else str(self.rng.randint(2, 9999)) for _ in range(n)]
        return " ".join(words).capitalize() + "."

    def question(self) -> str:
        if self.questions:
            return self._numbers(self.rng.choice(self.questions))
        return " ".join(self.sentence() for _ in range(self.rng.randint(2, 4))) + " How many are there?"


def rows(n: int, seed: int = 0) -> tuple[list[dict], list[dict], dict]:
    """(solutions, critique store, what the text was drawn from)."""
    rng = random.Random(seed)
    text = Text(rng)
    sols, crits = [], []
    for i in range(n):
        answer = str(rng.randint(2, 5000))
        steps = rng.randint(4, 10)
        correct = rng.random() < 0.45
        first = None if correct else rng.randint(1, steps)
        body = [" ".join(text.sentence() for _ in range(rng.randint(2, 3))) for _ in range(steps)]
        boxed = answer if correct else str(int(answer) + rng.randint(1, 50))
        solution = "\n".join(f"Step {k}: {s}" for k, s in enumerate(body, 1)) + f"\nThe answer is \\boxed{{{boxed}}}."
        sid = f"webinstruct-{i:05d}-s0"
        sols.append({"id": sid, "problem_id": f"webinstruct-{i:05d}", "question": text.question(), "answer": answer,
                     "solution": solution, "source": "synthetic", "correct": correct, "key": f"k{i}",
                     "first_error_step": first, "error_kind": None if correct else rng.choice(KINDS)})
        # the teacher: passes 28% of the wrong answers and fails 10% of the right ones (56% right verdicts,
        # a fifth of them disagreeing with the label)
        says_right = rng.random() < (0.9 if correct else 0.282)
        blame = first if first is not None and not says_right else rng.randint(1, steps) if not says_right else None
        lines = ["Let me check the solution step by step."]
        for k in range(1, steps + 1):
            if blame is not None and k == blame:
                lines.append(f"Step {k}: {text.sentence()} This step is incorrect. {text.sentence()} "
                             f"{text.sentence()} The correct computation is: {text.sentence()} {text.sentence()}")
            elif blame is not None and k > blame:
                lines.append(f"Step {k}: this step builds on the error above. {text.sentence()}")
            else:
                lines.append(f"Step {k}: The solution says: {text.sentence()} Checking: {text.sentence()} "
                             "This is correct.")
        lines.append(f"The final answer is \\boxed{{{answer if says_right else int(answer) + rng.randint(1, 9)}}}. "
                     f"{text.sentence()}")
        lines.append(f"Conclusion: {'right' if says_right else 'wrong'} [END]")
        failed = rng.random() < 0.003
        crits.append({"key": f"c{i}", "id": sid, "problem_id": f"webinstruct-{i:05d}",
                      "status": "failed" if failed else "ok", "critique": None if failed else "\n\n".join(lines),
                      "verdict": None if failed else "right" if says_right else "wrong",
                      "teacher": "gpt-4o-2024-11-20", "error_step": blame,
                      "error": "HTTP 429: rate limited (synthetic)" if failed else None})
    return sols, crits, {"text_from": text.source or "random filler words (no GSM8K train at hand)"}


def lengths(sols: list[dict], crits: list[dict]) -> dict:
    def med(xs):
        return round(statistics.median(xs))

    return {"question_chars_median": med([len(r["question"]) for r in sols]),
            "solution_chars_median": med([len(r["solution"]) for r in sols]),
            "critique_chars_median": med([len(r["critique"]) for r in crits if r["critique"]]),
            "text_chars_total": sum(len(r["question"]) + len(r["solution"]) for r in sols)
            + sum(len(r["critique"] or "") for r in crits)}


# ---------------------------------------------------------------------------------------------
# The browser


def chromium(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


BLOCK = re.compile(r'<script (?:id="payload"|class="t") type="application/octet-stream">([A-Za-z0-9+/=]*)</script>')
PAINTED = "const done = arguments[arguments.length - 1]; requestAnimationFrame(() => setTimeout(done, 0));"


def wait(driver, condition: str, limit: float = 60) -> None:
    deadline = time.perf_counter() + limit
    while not driver.execute_script("return " + condition):
        if time.perf_counter() > deadline:
            raise TimeoutError(condition)
        time.sleep(0.005)


def count(driver) -> int:
    return int(driver.execute_script("return +document.getElementById('count').dataset.n"))


def open_page(driver, url: str) -> float:
    driver.get("about:blank")
    t0 = time.perf_counter()
    driver.get(url)
    wait(driver, "document.body && document.body.dataset.ready")
    assert driver.execute_script("return document.body.dataset.ready") == "1", "the page could not read its data"
    assert driver.execute_script("return document.querySelectorAll('#cards .card').length") == 50
    assert driver.execute_script("return document.querySelectorAll('#cards .loading').length") == 0
    driver.execute_async_script(PAINTED)
    return time.perf_counter() - t0


def click_and_wait(driver, css: str) -> tuple[float, int]:
    before = count(driver)
    element = driver.find_element("css selector", css)
    t0 = time.perf_counter()
    element.click()
    wait(driver, f"+document.getElementById('count').dataset.n !== {before} && document.body.dataset.drawn === '1'")
    driver.execute_async_script(PAINTED)
    return time.perf_counter() - t0, count(driver)


def chip_filter(driver) -> tuple[float, int]:
    return click_and_wait(driver, '[data-facet="verdict"] [data-value="wrong"]')


def cell_filter(driver) -> tuple[float, int]:
    return click_and_wait(driver, '#confusion td[data-verdict="wrong"][data-label="right"]')


def search(driver, word: str) -> tuple[float, int]:
    before = count(driver)
    box = driver.find_element("id", "search")
    t0 = time.perf_counter()
    box.send_keys(word)
    wait(driver, f"+document.getElementById('count').dataset.n !== {before} && document.body.dataset.drawn === '1'")
    driver.execute_async_script(PAINTED)
    return time.perf_counter() - t0, count(driver)


def page_size(html_text: str, inputs: list[Path]) -> dict:
    """What the page's bytes are: the cards' structure and the texts' blocks, each gzip + base64."""
    blocks = BLOCK.findall(html_text)
    packed = [base64.b64decode(b) for b in blocks]
    raw = [gzip.decompress(b) for b in packed]
    page_bytes = len(html_text.encode())
    return {"page_bytes": page_bytes, "base64_bytes": sum(map(len, blocks)), "gzip_bytes": sum(map(len, packed)),
            "json_bytes": sum(map(len, raw)), "structure_gzip_bytes": len(packed[0]), "structure_json_bytes": len(raw[0]),
            "text_blocks": len(blocks) - 1, "template_and_tags_bytes": page_bytes - sum(map(len, blocks)),
            "inputs_bytes": sum(p.stat().st_size for p in inputs),
            "inputs_gzip_bytes": sum(len(gzip.compress(p.read_bytes(), 6)) for p in inputs),
            "json_over_gzip": round(sum(map(len, raw)) / sum(map(len, packed)), 2)}


def summary(xs: list[float]) -> dict:
    return {"median_ms": round(1000 * statistics.median(xs)), "min_ms": round(1000 * min(xs)),
            "max_ms": round(1000 * max(xs))}


def chromium_version() -> str | None:
    try:
        return subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/view_scale.json")
    ap.add_argument("--keep", help="keep the inputs and the page in this folder")
    args = ap.parse_args()
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        sys.exit("needs chromium and chromium-driver (apt-get install chromium chromium-driver) and selenium")
    load_before = os.getloadavg()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="view-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        sols, crits, drawn = rows(args.rows)
        write_jsonl(tmp / "solutions.jsonl", sols)
        (tmp / "critique").mkdir(exist_ok=True)
        write_jsonl(tmp / "critique" / "critiques.jsonl", crits)
        sizes = lengths(sols, crits)
        page = tmp / "page.html"
        page.unlink(missing_ok=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "critiquelab.cli", "view", str(tmp / "solutions.jsonl"),
                        str(tmp / "critique" / "critiques.jsonl"), "--out", str(page)], check=True)
        write_s = time.perf_counter() - t0
        size = page_size(page.read_text(encoding="utf-8"), [tmp / "solutions.jsonl", tmp / "critique" / "critiques.jsonl"])
        wrong = sum(r["verdict"] == "wrong" for r in crits)
        false_alarms = sum(r["verdict"] == "wrong" and s["correct"] for r, s in zip(crits, sols, strict=True))
        word = "altogether"
        url = page.as_uri()
        rounds = []
        for k in range(args.rounds):
            profile = tempfile.mkdtemp(prefix="view-scale-chromium-")
            driver = chromium(profile)
            try:
                row = {"round": k, "load_1min": round(os.getloadavg()[0], 2)}
                row["open_new_browser_s"] = round(open_page(driver, url), 3)
                order = [("chip", chip_filter), ("cell", cell_filter)]
                if k % 2:
                    order.reverse()
                row["filters_first"] = order[0][0]
                for name, fn in order:
                    open_page(driver, url)  # each filter from the unfiltered page
                    row[f"filter_{name}_s"], n = fn(driver)
                    row[f"filter_{name}_s"] = round(row[f"filter_{name}_s"], 3)
                    assert n == (wrong if name == "chip" else false_alarms), (name, n)
                row["open_again_s"] = round(open_page(driver, url), 3)
                row["search_s"], row["search_cards"] = search(driver, word)
                row["search_s"] = round(row["search_s"], 3)
                rounds.append(row)
                print(json.dumps(row), flush=True)
            finally:
                driver.quit()
                shutil.rmtree(profile, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    times = {key: summary([r[key] for r in rounds]) for key in
             ["open_new_browser_s", "open_again_s", "filter_chip_s", "filter_cell_s", "search_s"]}
    worst = max(times[k]["median_ms"] for k in ["open_new_browser_s", "open_again_s", "filter_chip_s", "filter_cell_s"])
    result = {"benchmark": "view_scale", "rows": args.rows, "rounds_n": args.rounds, "target_s": TARGET_S,
              "meets_target": worst <= 1000 * TARGET_S, "summary": times, "write_view_s": round(write_s, 1),
              "size": size, "text": {**sizes, **drawn}, "cards": {"all": args.rows, "verdict_wrong": wrong,
                                                                  "false_alarms": false_alarms},
              "search_word": word, "rounds": rounds, "chromium": chromium_version(),
              "cpu_count": os.cpu_count(),
              # the host's load averages (1, 5, 15 min) before and after: above cpu_count, other work shared the cores
              "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in os.getloadavg()], "provenance": provenance()}
    print(json.dumps({k: result[k] for k in ["summary", "size", "meets_target", "load_before", "load_after"]},
                     indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
