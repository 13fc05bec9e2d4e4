"""End to end in a real headless Chromium: open the page, upload a Beans test image, see k
captioned results, click one to search with it. Leaves a screenshot in test-artifacts/."""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from lookalike.cli.web import create_app
from lookalike.embed.embedder import Embedder
from lookalike.ingest import ingest
from lookalike.search import Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("LOOKALIKE_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI") == "true":
            pytest.fail("chromium and chromedriver must be installed in CI (.ci/run does it)")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager must not try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory, beans_dir, effnet_dir):
    store = connect(StoreConfig(path=str(tmp_path_factory.mktemp("web") / "store")))
    emb = Embedder(effnet_dir, device="cpu")
    ingest(load_source(beans_dir, "train", limit=120, seed=1), emb, store, "beans")
    searcher = Searcher("beans", store=store, embedder=emb)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(searcher), host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    while not running.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", searcher
    running.should_exit = True
    thread.join(timeout=10)
    store.close()


def wait_for(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out waiting for the page"
        time.sleep(0.1)
    return result


def loaded_results(browser, first_src=None):
    """The result figures once every image has loaded (and the first is first_src), or None."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        figures = browser.find_elements(By.CSS_SELECTOR, "#results figure")
        images = [f.find_element(By.TAG_NAME, "img") for f in figures]
        natural = "return arguments[0].naturalWidth"
        done = images and all(browser.execute_script(natural, i) for i in images)
        if done and first_src and images[0].get_attribute("src") != first_src:
            return None
        return figures if done else None
    except StaleElementReferenceException:  # the page replaced them while we looked
        return None


def test_upload_shows_k_captioned_results(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    url, searcher = server
    query = tmp_path / "query.jpg"
    searcher.source("test").record(50).image.save(query)  # a bean_rust leaf
    browser.get(url)
    wait_for(lambda: "images" in browser.find_element(By.ID, "about").text)
    browser.find_element(By.ID, "k").clear()
    browser.find_element(By.ID, "k").send_keys("5")
    browser.find_element(By.ID, "file").send_keys(str(query))
    figures = wait_for(lambda: loaded_results(browser))
    captions = [f.find_element(By.TAG_NAME, "figcaption").text for f in figures]
    assert len(figures) == 5
    assert captions[0].startswith("#1 ") and all("score 0." in c for c in captions)
    labels = {"angular_leaf_spot", "bean_rust", "healthy"}
    assert all(c.split("\n")[0].split(" ", 1)[1] in labels for c in captions)
    assert sum("bean_rust" in c for c in captions) >= 3
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "search-page.png"))

    # Clicking a result searches with it: it comes back as its own best match.
    first_src = figures[1].find_element(By.TAG_NAME, "img").get_attribute("src")
    figures[1].click()
    wait_for(lambda: loaded_results(browser, first_src))
    top = browser.find_element(By.CSS_SELECTOR, "#results figcaption").text
    assert float(top.split("score ")[1].split()[0]) > 0.99  # itself, JPEG-recompressed
