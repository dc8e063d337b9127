"""The view page in a real browser (headless Chromium through selenium): it opens from disk, filters
with counts, the confusion table's cells filter the cards, side by side views, the report's links,
and model text shown as text with nothing executed. Opt-in: `make check-browser` (pytest -m browser;
needs Debian's chromium and chromium-driver, and selenium). Only file:// pages: no traffic at all."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter

import pytest

from critiquelab.view import collect, render, write_view
from view_pages import PAYLOADS, payload_store, run_dir, two_teachers

pytestmark = pytest.mark.browser

CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
# no network: no background requests, updates, sync or QUIC; a fresh profile each session
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000"]


def chromium():
    """A headless Chromium driven by selenium, with a fresh --user-data-dir (removed by the caller)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (shutil.os.path.exists(CHROMIUM) and shutil.os.path.exists(DRIVER)):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="critiquelab-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options), profile


@pytest.fixture(scope="module")
def browser():
    driver, profile = chromium()
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, url: str) -> None:
    driver.get("about:blank")
    driver.get(url)
    deadline = time.monotonic() + 20
    while not driver.execute_script("return document.body && document.body.dataset.ready"):
        assert time.monotonic() < deadline, "the page did not finish loading its data"
        time.sleep(0.05)
    assert driver.execute_script("return document.body.dataset.ready") == "1"


def count(driver) -> int:
    return int(driver.execute_script("return document.getElementById('count').dataset.n"))


def js(driver, script: str):
    return driver.execute_script(script)


@pytest.fixture(scope="module")
def pages(tiny_world, tmp_path_factory):
    """Two teachers' critiques of 40 solutions (20 problems x 2), and the same with payload critiques."""
    root = tmp_path_factory.mktemp("view-browser")
    sols, store, store2 = two_teachers(tiny_world, root, 20)
    write_view([sols, store, store2], root / "two.html")
    bad, where = payload_store(sols, store, root / "bad")
    write_view([sols, bad], root / "bad.html")
    page = collect([sols, store, store2])
    (root / "lazy.html").write_text(render(page, chunk_chars=300), encoding="utf-8")  # texts in ~100 blocks
    return {"two": root / "two.html", "bad": root / "bad.html", "lazy": root / "lazy.html", "page": page,
            "where": where}


def test_a_filter_and_its_counts(browser, pages):
    page = pages["page"]
    rows = page.tabs[0]["rows"]
    open_page(browser, pages["two"].as_uri())
    assert count(browser) == 80 == len(rows)
    assert js(browser, "return document.querySelectorAll('#cards .card').length") == 50  # the first page
    wrong = [r for r in rows if r["v"] == "wrong"]
    browser.find_element("css selector", '[data-facet="verdict"] [data-value="wrong"]').click()
    assert count(browser) == len(wrong)
    # the other facets count within the filter: the reference grades of the 'wrong' verdicts
    by_label = Counter("right" if page.solutions[r["s"]]["l"] else "wrong" for r in wrong)
    for label, n in by_label.items():
        assert int(browser.find_element("css selector", f'[data-facet="label"] [data-value="{label}"]')
                   .get_attribute("data-n")) == n
    assert "verdict=wrong" in browser.current_url
    box = browser.find_element("id", "search")
    box.send_keys(page.problems[page.solutions[wrong[0]["s"]]["p"]]["q"][:30])
    time.sleep(0.5)
    assert 1 <= count(browser) < len(wrong) and js(browser, "return document.querySelectorAll('#cards mark').length")


def test_a_confusion_cell_filters_the_cards(browser, pages):
    page = pages["page"]
    rows = page.tabs[0]["rows"]
    open_page(browser, pages["two"].as_uri())
    cell = browser.find_element("css selector", '#confusion td[data-verdict="wrong"][data-label="right"]')
    expected = sum(r["v"] == "wrong" and page.solutions[r["s"]]["l"] is True for r in rows)
    assert expected > 0 and int(cell.text) == expected  # the noisy teacher's false alarms
    cell.click()
    assert count(browser) == expected
    badges = js(browser, "return [...document.querySelectorAll('#cards .card')].map(c => c.textContent)")
    assert len(badges) == expected and all("verdict: wrong" in b and "reference: right" in b for b in badges)
    browser.find_element("css selector", '#confusion td[data-verdict="wrong"][data-label="right"]').click()
    assert count(browser) == len(rows)  # a second click clears the cell's filter


def test_side_by_side_every_critique_and_every_solution(browser, pages):
    open_page(browser, pages["two"].as_uri())
    browser.find_element("css selector", "#cards .card .cmp-sol").click()
    assert js(browser, "return document.getElementById('compare').classList.contains('open')")
    teachers = js(browser, "return [...document.querySelectorAll('#compare .col h4')].map(h => h.textContent)")
    assert len(teachers) == 2 and any("recompute" in t for t in teachers) and "sol=" in browser.current_url
    browser.find_element("css selector", "#compare .close").click()
    browser.find_element("css selector", "#cards .card .cmp-prob").click()
    assert js(browser, "return document.querySelectorAll('#compare .col').length") == 2  # 2 solutions a problem


def test_pages_of_fifty(browser, pages):
    open_page(browser, pages["two"].as_uri())
    browser.find_element("xpath", "//div[@id='pager1']/button[contains(., 'next')]").click()
    assert js(browser, "return document.querySelectorAll('#cards .card').length") == 30
    assert "page=2" in browser.current_url


def test_the_reports_worst_kind_opens_its_cards(browser, tiny_world, tiny_model, tmp_path):
    from critiquelab.io import read_json
    from critiquelab.report import write_report

    run = run_dir(tiny_world, tiny_model, tmp_path / "run")
    write_view([run], run / "view.html")
    write_report(run)
    browser.get((run / "report.html").as_uri())
    link = browser.find_element("xpath", "//a[contains(@href, 'kind=')]")
    kind = link.text.split(" ")[0]
    link.click()
    deadline = time.monotonic() + 20
    while not js(browser, "return document.body.dataset.ready"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    by_kind = read_json(run / "critic" / "base" / "critic.json")["metrics"]["recall_by_kind"][kind]
    misses = round(by_kind["n"] * (1 - by_kind["recall"]))
    assert count(browser) == misses
    kinds = js(browser, "return [...document.querySelectorAll('#cards .card')].map(c => c.textContent)")
    assert all(f"error kind: {kind}" in k for k in kinds)
    browser.find_element("xpath", "//nav[@id='tabs']/button[contains(., 'method: base')]").click()
    assert count(browser) == 8


def _shown(text: str) -> str:
    """What the page shows for a text: control and bidi characters as visible marks."""
    out = []
    for ch in text:
        c = ord(ch)
        if c < 32 and ch not in "\n\t\r":
            out.append(chr(0x2400 + c))
        elif c == 127:
            out.append("\u2421")
        elif c in (0x200E, 0x200F) or 0x202A <= c <= 0x202E or 0x2066 <= c <= 0x2069:
            out.append(f"U+{c:X}")
        else:
            out.append(ch)
    return "".join(out)


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_model_text_is_shown_as_text_and_never_runs(browser, pages, name):
    open_page(browser, pages["bad"].as_uri() + f"#tab=critiques&q=XSS-{name}%3A")
    title = js(browser, "return document.title")
    assert count(browser) == 1
    crit = "document.querySelector('#cards .card .crit')"
    if js(browser, f"return !!{crit}.querySelector('button.more')"):  # a long text: shown in full on request
        browser.find_element("css selector", "#cards .card .crit button.more").click()
    assert js(browser, f"return {crit}.textContent") == _shown(f"XSS-{name}: {PAYLOADS[name]}")
    assert js(browser, "return window.pwned === undefined") and js(browser, "return document.title") == title
    assert title.startswith("critiquelab view") and "pwned" not in title
    assert js(browser, "return document.querySelectorAll('#cards script, #cards img, #cards svg, #cards iframe, "
                       "#cards textarea, #cards a').length") == 0
    # the card's solution and question are the real ones, untouched by what the critique holds
    assert js(browser, "return document.querySelector('#cards .card .id').textContent") == pages["where"][name]


def drawn(driver) -> None:
    """Wait until the cards of the current state show their texts (blocks read as needed)."""
    deadline = time.monotonic() + 20
    while js(driver, "return document.body.dataset.drawn") != "1":
        assert time.monotonic() < deadline, "the cards' texts were not read"
        time.sleep(0.05)
    assert js(driver, "return document.querySelectorAll('.loading').length") == 0


def test_texts_read_block_by_block_as_cards_need_them(browser, pages):
    """A page whose texts are in many blocks: opening reads only the first page's, a filter, the next
    page and side by side read theirs, the search reads them all; each card shows its own texts."""
    page = pages["page"]
    rows = page.tabs[0]["rows"]
    blocks = "return [...document.getElementsByClassName('t')].map(b => b.textContent === '')"

    def texts_match():  # each card's critique and question are its row's
        cards = js(browser, "return [...document.querySelectorAll('#cards .card')].map(c => [+c.dataset.row, "
                            "c.querySelector('.crit').textContent, c.querySelector('.q').textContent])")
        assert cards
        for i, crit, q in cards:
            assert crit == rows[i]["c"] and q == page.problems[page.solutions[rows[i]["s"]]["p"]]["q"]

    open_page(browser, pages["lazy"].as_uri())
    read = js(browser, blocks)
    assert len(read) > 50 and 0 < sum(read) < len(read)  # only the blocks of the first page (50 of 80 cards)
    texts_match()
    browser.find_element("xpath", "//div[@id='pager1']/button[contains(., 'next')]").click()
    drawn(browser)
    texts_match()
    browser.find_element("css selector", '#confusion td[data-verdict="wrong"][data-label="right"]').click()
    drawn(browser)
    texts_match()
    assert count(browser) == sum(r["v"] == "wrong" and page.solutions[r["s"]]["l"] is True for r in rows)
    browser.find_element("css selector", "#cards .card .cmp-sol").click()
    drawn(browser)
    shown = js(browser, "return [...document.querySelectorAll('#compare .col .crit')].map(c => c.textContent)")
    sol = rows[int(js(browser, "return document.querySelector('#cards .card').dataset.row"))]["s"]
    assert sorted(shown) == sorted(r["c"] for r in rows if r["s"] == sol)
    browser.find_element("css selector", "#compare .close").click()
    question = page.problems[page.solutions[rows[-1]["s"]]["p"]]["q"]
    browser.find_element("id", "search").send_keys(question[:40])
    deadline = time.monotonic() + 20
    while "q=" not in browser.current_url:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    drawn(browser)
    assert all(js(browser, blocks))  # the search read every block
    expected = sum(r["v"] == "wrong" and page.solutions[r["s"]]["l"] is True
                   and question[:40].lower() in page.problems[page.solutions[r["s"]]["p"]]["q"].lower() for r in rows)
    assert count(browser) == expected
