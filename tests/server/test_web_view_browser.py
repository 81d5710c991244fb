"""The web view in a real headless browser: Debian's chromium through chromium-driver and
selenium, against the session's real server (which has an API key, so the page must ask for
it). Requests that share a prefix go through the playground and through the API; the tree
must show the shared node with its token count, the hit rate must move, the request table
must list running requests, and the playground's output must equal the same request sent
to /generate, with its jump-forwarded tokens marked. The screenshot it takes is the README's
picture (docs/images/web-view.png), so the picture stays true.

The browser comes from scripts/install_browser.sh (apt; .ci/run calls it); this test calls
it too when no browser is found, and is skipped, saying why, only when none can be installed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from .conftest import API_KEY

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "images" / "web-view.png"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1500", "--hide-scrollbars"]
WAIT_S = 30


def find_browser() -> tuple[str, str] | None:
    paths = (shutil.which("chromium"), shutil.which("chromedriver"))
    return paths if all(paths) else None


@pytest.fixture(scope="module")
def driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (a dev extra) is not installed")
    if find_browser() is None:
        subprocess.run(["bash", str(ROOT / "scripts" / "install_browser.sh")], check=False, timeout=900)
    found = find_browser()
    if found is None:
        pytest.skip("no chromium + chromedriver here, and scripts/install_browser.sh could not install them "
                    "(it needs apt-get and root)")
    chromium, chromedriver = found
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    with tempfile.TemporaryDirectory() as profile:
        for flag in [*CHROME_FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(chromedriver))
        try:
            yield browser
        finally:
            browser.quit()


def wait_for(what: str, check, timeout: float = WAIT_S):
    """Poll `check()` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Page:
    """The live view as a user drives it."""

    def __init__(self, driver, url: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver, self.by = driver, By
        driver.get(url + "/")

    def el(self, css: str):
        return self.driver.find_element(self.by.CSS_SELECTOR, css)

    def all(self, css: str) -> list:
        return self.driver.find_elements(self.by.CSS_SELECTOR, css)

    def connect(self, key: str) -> None:
        wait_for("the API key form", lambda: self.el("#key-form").is_displayed())
        self.el("#key-input").send_keys(key)
        self.el("#key-submit").click()
        wait_for("the page to go live", lambda: self.el("#status").text == "live")

    def hit_rate(self) -> float:
        return float(self.el("#hit-rate").get_attribute("data-value"))

    def generate(self, prompt: str, max_new_tokens: int, kind: str = "", constraint: str = "") -> str:
        """Run the playground (prompt mode, greedy) and return its output text."""
        from selenium.webdriver.support.ui import Select

        for css, value in (("#pg-prompt", prompt), ("#pg-max-new-tokens", str(max_new_tokens)),
                           ("#pg-temperature", "0"), ("#pg-constraint", constraint)):
            field = self.el(css)
            field.clear()
            field.send_keys(value)
        Select(self.el("#pg-constraint-kind")).select_by_value(kind)
        self.el("#pg-run").click()
        wait_for("the playground to finish", lambda: self.el("#pg-output").get_attribute("data-done") == "true"
                 and not self.el("#pg-run").get_property("disabled"))
        assert not self.el("#pg-error").is_displayed(), self.el("#pg-error").text
        return self.el("#pg-output").get_property("textContent")


def generate(server, prompt: str, params: dict, rid: str | None = None) -> dict:
    body = {"text": prompt, "sampling_params": {"temperature": 0, **params}}
    if rid is not None:
        body["rid"] = rid
    return server.generate(body)


def test_the_page_shows_the_tree_hits_batch_and_playground(server, driver):
    assert server.post("/flush_cache").status_code == 200  # the tree holds only this test's prefixes
    page = Page(driver, server.url)
    page.connect(API_KEY)
    before = page.hit_rate()  # live: the first /stats has been shown
    prefix = ("You are the radix cache demo assistant. Every request of this demo starts with these "
              "same words, so the server computes them once and serves them from the cache. ")
    questions = ["Question: what is the capital of France? Answer:", "Question: what colour is the sky? Answer:"]

    # through the API, then the same prefix through the playground
    generate(server, prefix + questions[0], {"max_new_tokens": 8})
    shown = page.generate(prefix + questions[1], max_new_tokens=8)
    assert shown == generate(server, prefix + questions[1], {"max_new_tokens": 8})["text"]
    cached = page.el("#pg-prompt-view .tok-cached").get_property("textContent")
    # both questions start "Question: what", so the cached part is the prefix and those words
    assert (prefix + questions[1]).startswith(cached) and len(cached) >= len(prefix)

    # the tree: the shared node, with its token count, hit by the second request
    ids = [server.post("/encode", {"text": prefix + q}).json()["input_ids"] for q in questions]
    shared = next(i for i, (a, b) in enumerate(zip(*ids)) if a != b)
    node = wait_for(f"a depth-1 node of {shared} tokens",
                    lambda: page.all(f'.tree-node[data-depth="1"][data-tokens="{shared}"]'))[0]
    assert int(node.get_attribute("data-hits")) >= 1
    node.click()
    assert f"{shared} tokens" in wait_for("the node's details", lambda: page.all("#node-detail pre") and
                                          page.el("#node-detail").text)
    wait_for("the hit rate to move", lambda: page.hit_rate() != before)

    # jump-forward, marked in the playground's output, equal to /generate's
    regex = r"Answer: (yes|no)\. I am sure\."
    shown = page.generate(prefix + "Is the sky blue?", max_new_tokens=16, kind="regex", constraint=regex)
    assert shown == generate(server, prefix + "Is the sky blue?", {"max_new_tokens": 16, "regex": regex})["text"]
    jumped = "".join(s.get_property("textContent") for s in page.all("#pg-output .tok-jump"))
    assert "Answer:" in jumped and "I am" in jumped  # forced text, not sampled

    # running requests listed in the batch table (and the picture taken while they run)
    rids = [f"browser-{uuid.uuid4().hex[:6]}-{i}" for i in range(3)]
    runs = [threading.Thread(target=generate, args=(server, prefix + f"Tell story number {i}.",
                                                    {"max_new_tokens": 64, "ignore_eos": True}, rid))
            for i, rid in enumerate(rids)]
    for t in runs:
        t.start()
    try:
        rows = wait_for("the running requests in the table", lambda: all(
            page.all(f'#batch-table tr[data-rid="{rid}"][data-state="running"]') for rid in rids))
        assert rows
        wait_for("the tree to show them locked", lambda: page.all(".tree-node.locked"), timeout=10)
        time.sleep(0.5)  # one more poll, so the charts have moved on
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
    finally:
        for t in runs:
            t.join()
    logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "401" not in e["message"]]
    assert not logs, logs  # no script error (401s before the key was typed are expected)


def test_the_key_is_kept_only_in_the_tabs_session_storage(server, driver):
    driver.get(server.url + "/")
    assert driver.execute_script("return sessionStorage.getItem('radixlm.apiKey')") == API_KEY
    assert driver.execute_script("return localStorage.length") == 0
    assert requests.get(server.url + "/stats", timeout=30).status_code == 401
