"""The screenshots of docs/view.md, taken by headless Chromium (selenium's save_screenshot, 1400x900)
of pages `critiquelab view` writes from real stage outputs:

- view-run.png: a demo experiment's run directory (`critiquelab demo --preset fast`; given with
  --demo, or run first into it: about 5 minutes on 2 cores), its first critic's tab;
- view-prmbench.png: that run's CFT model as a critic on PRMBench (`eval-critic --benchmark prmbench`,
  `critic.benchmark_limit=1`: 32 items), its wrong items;
- view-two-teachers.png: the world's synthetic solutions (`sample`) critiqued by two teachers (the
  exact checker and a noisy one, `critique`), filtered by a cell of the confusion table;
- view-side-by-side.png: one solution's critiques side by side.

    .venv/bin/python scripts/view_screenshots.py [--demo runs/demo] [--out docs/img] [--work DIR]

Needs Debian's chromium and chromium-driver and selenium (the `browser` extra). The PNGs are
reduced to 128 colours (each under ~300 KB); the pages stay in --work (a temporary folder if not given).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from critiquelab.config import CritiqueConfig, SampleConfig
from critiquelab.critique import run_critique
from critiquelab.io import read_json
from critiquelab.sample import run_sample
from critiquelab.sources import benchmarks_dir
from critiquelab.view import collect, write_view

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1400,900"]


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "critiquelab.cli", *args], check=True)


def demo_run(run: Path) -> Path:
    if not (run / "report.json").is_file():
        cli("demo", "--preset", "fast", "--out", str(run))
    return run


def two_teachers(world: Path, work: Path) -> tuple[Path, Path, Path]:
    sols = work / "solutions.jsonl"
    if not sols.is_file():
        run_sample(world / "train.jsonl", sols, SampleConfig(source="synthetic", n_problems=30, n_per_problem=2,
                                                              error_rate=0.5))
    run_critique(sols, work / "critique", CritiqueConfig())
    run_critique(sols, work / "critique-noisy", CritiqueConfig(checker_style="recompute", checker_noise=0.25))
    return sols, work / "critique" / "critiques.jsonl", work / "critique-noisy" / "critiques.jsonl"


def prmbench_output(run: Path, work: Path) -> Path:
    cells = [c for c in read_json(run / "cells.json") if c.get("method") == "cft" and c.get("model_dir")]
    critic = run / cells[0]["model_dir"] if cells else run / "models" / "cft-s0"  # (relative to the run)
    out = work / "prmbench"
    if not (out / "critic.json").is_file():
        cli("eval-critic", "--critic", str(critic), "--benchmark", "prmbench", "--out", str(out),
            "critic.benchmark_limit=1", "critic.max_new_tokens=160")
    return out


def browser(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # the page's viewport itself 1400x900
                           {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    return driver


def shoot(driver, url: str, png: Path, click: str | None = None) -> None:
    driver.get("about:blank")
    driver.get(url)
    deadline = time.monotonic() + 60
    while driver.execute_script("return document.body.dataset.ready") != "1":
        if time.monotonic() > deadline:
            raise TimeoutError(url)
        time.sleep(0.05)
    if click:
        driver.find_element("css selector", click).click()
    time.sleep(0.3)
    driver.save_screenshot(str(png))
    small(png)
    print(f"{png} ({png.stat().st_size / 1e3:.0f} KB)")


def small(png: Path) -> None:
    """128 colours, optimised: text screenshots stay sharp and under ~300 KB."""
    from PIL import Image

    with Image.open(png) as im:
        im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", default="runs/demo", help="a demo run directory (run into it if it has no report)")
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--work", help="keep the inputs and pages here")
    args = ap.parse_args()
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        sys.exit("needs chromium and chromium-driver (apt-get install chromium chromium-driver) and selenium")
    if not (benchmarks_dir() / "prmbench").is_dir():
        sys.exit(f"needs PRMBench at {benchmarks_dir() / 'prmbench'} (or --benchmarks-dir via CRITIQUELAB_BENCHMARKS)")
    work = Path(args.work or tempfile.mkdtemp(prefix="view-shots-"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    run = demo_run(Path(args.demo))
    write_view([run], work / "run.html")
    prm = prmbench_output(run, work)
    write_view([prm], work / "prmbench.html")
    sols, store, noisy = two_teachers(run / "world", work / "teachers")
    write_view([sols, store, noisy], work / "teachers.html")

    critic_tab = next(t["id"] for t in collect([run]).tabs if t["kind"] == "critic")
    # a wrong solution the exact checker calls wrong and the noisy teacher right: the two critiques side by side
    page = collect([sols, store, noisy])
    rows = page.tabs[0]["rows"]
    caught = {r["s"] for r in rows if r["w"] == "checker" and r["v"] == "wrong" and page.solutions[r["s"]]["l"] is False}
    both = next(r["s"] for r in rows if r["w"] != "checker" and r["v"] == "right" and r["s"] in caught)

    profile = tempfile.mkdtemp(prefix="view-shots-chromium-")
    driver = browser(profile)
    try:
        shoot(driver, (work / "run.html").as_uri() + f"#tab={critic_tab}&label=wrong", out / "view-run.png")
        shoot(driver, (work / "prmbench.html").as_uri() + f"#tab=critic/{prm}&label=wrong", out / "view-prmbench.png")
        shoot(driver, (work / "teachers.html").as_uri() + "#tab=critiques&verdict=wrong&label=right",
              out / "view-two-teachers.png")
        shoot(driver, (work / "teachers.html").as_uri() + f"#tab=critiques&sol={both}", out / "view-side-by-side.png")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"pages in {work}")


if __name__ == "__main__":
    main()
