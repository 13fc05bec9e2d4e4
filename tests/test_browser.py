"""End to end in a real headless Chromium, as a person uses the page: an empty page that says
what to do, an upload and its k captioned results, k changed as it is typed, a result clicked
(it searches with that image, which does not find itself), the full-size view, an error that
replaces old results, and a phone-wide window. Leaves screenshots in test-artifacts/."""

import os
import re
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from lookalike.cli.web import create_app
from lookalike.search import Searcher
from lookalike.store import StoreConfig, connect
from tests.live import serving

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
def server(beans_store):
    store = connect(StoreConfig(path=beans_store[1]))
    searcher = Searcher("beans", store=store)
    searcher.embedder  # noqa: B018 - loaded before the first request, as serve does
    with serving(create_app(searcher)) as url:
        yield url, searcher
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

    try:
        figures = browser.find_elements(By.CSS_SELECTOR, "#results figure")
        images = [f.find_element(By.TAG_NAME, "img") for f in figures]
        # Pictures below the window load as they are scrolled to (loading=lazy).
        natural = (
            "const i = arguments[0];"
            "return i.naturalWidth > 0 || i.getBoundingClientRect().top > window.innerHeight"
        )
        done = images and all(browser.execute_script(natural, i) for i in images)
        if done and first_src and images[0].get_attribute("src") != first_src:
            return None
        return figures if done else None
    except StaleElementReferenceException:  # the page replaced them while we looked
        return None


def searched(browser):
    """The results of a search (not the collection browsed before it) once loaded."""
    status = browser.find_element(By.ID, "status")
    return wait_for(lambda: "most similar" in status.text and loaded_results(browser))


def shot(browser, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def open_page(browser, url, width=1280):
    browser.set_window_size(width, 900)
    browser.get(url)
    wait_for(lambda: "images" in browser.find_element(By.ID, "about").text)


def captions(figures):
    return [f.find_element(By.TAG_NAME, "figcaption").text for f in figures]


def test_the_page_opens_on_the_collection_paged_and_a_picture_click_searches(browser, server):
    url, searcher = server
    n = searcher.info.points
    open_page(browser, url)
    figures = wait_for(lambda: loaded_results(browser))
    assert len(figures) == 24  # a page of the collection, before any query
    status = browser.find_element(By.ID, "status").text
    assert status.startswith(f"images 1–24 of {n}, by file name")
    assert browser.find_element(By.ID, "page").text == f"1–24 of {n}"
    assert not browser.find_element(By.ID, "preview").is_displayed()  # no empty <img> icon
    srcs = [f.find_element(By.TAG_NAME, "img").get_attribute("src") for f in figures]
    assert all("/thumbnail" in s for s in srcs)  # never the originals
    icon = browser.execute_script("return document.querySelector('link[rel=icon]').href")
    with urllib.request.urlopen(icon) as response:
        assert response.headers["content-type"] == "image/svg+xml"
    shot(browser, "browse-page")
    browser.find_element(By.ID, "next").click()
    wait_for(lambda: browser.find_element(By.ID, "page").text == f"25–48 of {n}")
    # The label filter works without a query.
    Select(browser.find_element(By.ID, "label")).select_by_visible_text("bean_rust")
    wait_for(lambda: browser.find_element(By.ID, "page").text.startswith("1–24 of "))
    figures = wait_for(lambda: loaded_results(browser))
    assert all(c.split("\n")[0] == "bean_rust" for c in captions(figures))
    name = figures[3].find_element(By.CLASS_NAME, "file").text
    figures[3].find_element(By.CLASS_NAME, "search-with").click()
    wait_for(lambda: "left out" in browser.find_element(By.ID, "query-detail").text)
    assert browser.find_element(By.ID, "query-title").text == name
    assert browser.find_element(By.ID, "pager").is_displayed() is False
    browser.find_element(By.ID, "browse").click()  # back to the collection
    wait_for(lambda: browser.find_element(By.ID, "page").text.startswith("1–24 of "))
    assert not browser.find_element(By.ID, "query-view").is_displayed()

    # /docs needs no CDN: the endpoints are drawn from openapi.json by the page itself.
    browser.get(url + "docs")
    endpoints = browser.find_element(By.ID, "endpoints")
    wait_for(lambda: "/points/{point_id}/thumbnail" in endpoints.text)
    shot(browser, "api-docs")


def test_upload_shows_k_captioned_results_and_k_applies_at_once(browser, server, tmp_path):
    url, searcher = server
    query = tmp_path / "rust-leaf.png"  # lossless: the same pixels `search test:50` embeds
    searcher.source("test").record(50).image.save(query)  # a bean_rust leaf
    open_page(browser, url)
    browser.find_element(By.ID, "file").send_keys(str(query))
    figures = searched(browser)
    texts = captions(figures)
    assert len(figures) == 12
    assert texts[0].startswith("#1 ") and all("score 0." in c for c in texts)
    labels = {"angular_leaf_spot", "bean_rust", "healthy"}
    assert all(c.split("\n")[0].split(" ", 1)[1] in labels for c in texts)
    assert sum("bean_rust" in c for c in texts[:5]) >= 3
    assert all(".jpg" in c for c in texts)  # each result names its file
    assert browser.find_element(By.ID, "query-title").text == "rust-leaf.png"
    shot(browser, "search-page")

    # k applies as it is typed: no blur, no Enter.
    k = browser.find_element(By.ID, "k")
    k.send_keys(Keys.CONTROL, "a")
    k.send_keys("3")
    wait_for(lambda: len(loaded_results(browser) or []) == 3)


def test_a_clicked_result_is_the_new_query_and_does_not_find_itself(browser, server, tmp_path):
    url, searcher = server
    query = tmp_path / "leaf.jpg"
    searcher.source("test").record(3).image.save(query)
    open_page(browser, url)
    browser.find_element(By.ID, "file").send_keys(str(query))
    figures = searched(browser)
    clicked = figures[1].find_element(By.TAG_NAME, "img").get_attribute("src")
    name = figures[1].find_element(By.CLASS_NAME, "file").text
    label = captions(figures)[1].split("\n")[0].split(" ", 1)[1]
    figures[1].find_element(By.CLASS_NAME, "search-with").click()
    wait_for(lambda: "left out" in browser.find_element(By.ID, "query-detail").text)
    figures = wait_for(lambda: loaded_results(browser))
    assert browser.find_element(By.ID, "file").get_attribute("value") == ""
    assert browser.find_element(By.ID, "query-title").text == name
    assert f"label {label}" in browser.find_element(By.ID, "query-detail").text
    srcs = [f.find_element(By.TAG_NAME, "img").get_attribute("src") for f in figures]
    assert clicked not in srcs and len(figures) == 12


def test_view_opens_the_full_size_image(browser, server, tmp_path):
    url, searcher = server
    query = tmp_path / "leaf.jpg"
    searcher.source("test").record(7).image.save(query)
    open_page(browser, url)
    browser.find_element(By.ID, "file").send_keys(str(query))
    figures = searched(browser)
    loaded = "return performance.getEntriesByType('resource').map((e) => e.name)"
    assert not [u for u in browser.execute_script(loaded) if u.endswith("/image")]  # thumbnails
    figures[0].find_element(By.CSS_SELECTOR, ".actions button").click()
    viewer = browser.find_element(By.ID, "viewer")
    wait_for(lambda: viewer.is_displayed())
    image = browser.find_element(By.ID, "viewer-image")
    wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", image))
    assert ".jpg" in browser.find_element(By.ID, "viewer-caption").text
    shot(browser, "full-size-view")
    browser.find_element(By.ID, "viewer-close").click()
    assert not viewer.is_displayed()


def test_an_error_replaces_the_old_results(browser, server, tmp_path):
    url, searcher = server
    good, bad = tmp_path / "leaf.jpg", tmp_path / "notes.jpg"
    searcher.source("test").record(9).image.save(good)
    bad.write_text("not an image")
    open_page(browser, url)
    browser.find_element(By.ID, "file").send_keys(str(good))
    searched(browser)
    browser.find_element(By.ID, "file").send_keys(str(bad))
    status = browser.find_element(By.ID, "status")
    wait_for(lambda: "Error" in status.text)
    assert "not a readable image" in status.text
    assert browser.find_elements(By.CSS_SELECTOR, "#results figure") == []
    assert not browser.find_element(By.ID, "preview").is_displayed()  # no broken-image icon
    shot(browser, "error")


def test_a_phone_wide_window_does_not_scroll_sideways(browser, server, tmp_path):
    url, searcher = server
    query = tmp_path / "a-rather-long-file-name-for-a-leaf-photographed-in-the-field.jpg"
    searcher.source("test").record(11).image.save(query)
    open_page(browser, url, width=400)
    browser.find_element(By.ID, "file").send_keys(str(query))
    searched(browser)
    inner = browser.execute_script("return window.innerWidth")
    assert inner <= 400
    wide = "return document.documentElement.scrollWidth"
    assert browser.execute_script(wide) <= inner
    hint = browser.find_element(By.CLASS_NAME, "hint")
    right = browser.execute_script("return arguments[0].getBoundingClientRect().right", hint)
    assert right <= inner  # the hint is not cut off
    shot(browser, "phone-width")


def test_filter_box_and_more_or_less_like_this(browser, server, tmp_path):
    url, searcher = server
    query = tmp_path / "query.png"
    searcher.source("test").record(50).image.save(query)
    open_page(browser, url)
    wait_for(lambda: "label_name (keyword)" in browser.find_element(By.ID, "fields").text)
    # Tab: the filter is set (its change event fired) before the image is chosen.
    browser.find_element(By.ID, "where").send_keys("label_name=healthy\t")
    browser.find_element(By.ID, "file").send_keys(str(query))
    figures = searched(browser)
    assert all("healthy" in c.split("\n")[0] for c in captions(figures))
    assert browser.find_element(By.ID, "query-view").is_displayed()

    # More like the second result, less like the third: a recommend query, still filtered.
    liked = figures[1].find_element(By.TAG_NAME, "img").get_attribute("src")
    disliked = figures[2].find_element(By.TAG_NAME, "img").get_attribute("src")
    less, more = "button[data-side=negative]", "button[data-side=positive]"
    figures[2].find_element(By.CSS_SELECTOR, less).click()
    assert "choose an image you want more like" in browser.find_element(By.ID, "status").text
    figures[1].find_element(By.CSS_SELECTOR, more).click()
    title = browser.find_element(By.ID, "examples-title")
    wait_for(lambda: title.text == "More like 1, less like 1")
    # The panel shows the examples, not the upload searched before them.
    assert not browser.find_element(By.ID, "query-view").is_displayed()
    shown = browser.find_elements(By.CSS_SELECTOR, "#examples-view .example img")
    assert [i.get_attribute("src") for i in shown] == [liked, disliked]

    def recommended():  # the new results: neither example is among them
        from selenium.common.exceptions import StaleElementReferenceException

        try:
            figures = loaded_results(browser) or []
            sources = [f.find_element(By.TAG_NAME, "img").get_attribute("src") for f in figures]
        except StaleElementReferenceException:
            return None
        return figures if sources and not {liked, disliked} & set(sources) else None

    figures = wait_for(recommended)
    assert all("healthy" in c.split("\n")[0] for c in captions(figures))
    shot(browser, "more-like-this")

    # × takes one example back; "Clear examples" returns to the image searched before.
    browser.find_element(By.CSS_SELECTOR, "#negative-row .example button").click()
    wait_for(lambda: title.text == "More like 1, less like 0")
    browser.find_element(By.ID, "clear-examples").click()
    wait_for(lambda: browser.find_element(By.ID, "query-view").is_displayed())
    assert not browser.find_element(By.ID, "examples-view").is_displayed()
    assert browser.find_element(By.ID, "query-title").text == "query.png"
    searched(browser)


# A plain folder of photos (class sub-folders, no split ones) with your own fields.
PLACES = ("Alps", "coast", "city")


@pytest.fixture(scope="module")
def library(tmp_path_factory, beans_photos, tiny_vit):
    import json

    from lookalike.embed.embedder import Embedder
    from lookalike.ingest import ingest
    from lookalike.source import load_source
    from lookalike.thumbnails import Thumbnails

    root = tmp_path_factory.mktemp("library")
    folder = root / "photos"
    shutil.copytree(beans_photos / "photos", folder)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
    lines = []
    for i, name in enumerate(files):
        fields = {"file_name": name, "place": PLACES[i % 3], "camera": f"Pixel {6 + i % 2}"}
        if i % 4:  # some photos carry no date: they come last
            fields["taken"] = f"2024-{1 + i % 12:02d}-{1 + i:02d}T09:30:00"
        lines.append(json.dumps(fields))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    store = connect(StoreConfig(path=str(root / "store")))
    emb = Embedder(tiny_vit, device="cpu", precision="fp32")
    ingest(load_source(str(folder)), emb, store, "library")
    searcher = Searcher("library", store=store, embedder=emb)
    with serving(create_app(searcher, thumbnails=Thumbnails(str(root / "thumbs")))) as url:
        yield url, searcher, lines
    store.close()


def newest(lines):
    import json

    dated = [json.loads(line) for line in lines if "taken" in line]
    return max(dated, key=lambda f: f["taken"])["file_name"].split("/")[-1]


def test_your_fields_show_on_each_card_and_in_the_full_view(browser, library):
    url, _, lines = library
    open_page(browser, url)
    figures = wait_for(lambda: loaded_results(browser))
    status = browser.find_element(By.ID, "status").text
    assert status.startswith(f"images 1–{len(lines)} of {len(lines)}, newest first")
    assert figures[0].find_element(By.CLASS_NAME, "file").text == newest(lines)
    for caption in captions(figures):
        assert "place" in caption and "camera" in caption and "Pixel" in caption
    # A plain folder has no split worth naming: no "train" anywhere on the page.
    # (Beans' file names hold "_train.": a split would show as a word of its own.)
    assert not re.search(r"\btrain\b", browser.find_element(By.ID, "results").text)
    shot(browser, "fields-on-cards")

    figures[0].find_element(By.CSS_SELECTOR, ".actions button").click()
    viewer = browser.find_element(By.ID, "viewer")
    wait_for(lambda: viewer.is_displayed())
    fields = browser.find_element(By.ID, "viewer-fields").text
    assert "place" in fields and "taken" in fields and "2024-" in fields
    assert not re.search(r"\btrain\b", browser.find_element(By.ID, "viewer-caption").text)
    image = browser.find_element(By.ID, "viewer-image")
    wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", image))
    assert image.get_attribute("src").endswith("/image")  # the original, on request
    shot(browser, "fields-full-size")
    browser.find_element(By.ID, "viewer-close").click()

    # Filters work without a query.
    browser.find_element(By.ID, "where").send_keys("place=Alps\t")
    wait_for(
        lambda: (
            "newest first" in browser.find_element(By.ID, "status").text
            and len(loaded_results(browser) or []) == 5
        )
    )
    assert all("Alps" in c for c in captions(loaded_results(browser)))


def test_group_by_and_min_score(browser, library):
    url, _, _ = library
    open_page(browser, url)
    figures = wait_for(lambda: loaded_results(browser))
    figures[0].find_element(By.CLASS_NAME, "search-with").click()
    figures = searched(browser)
    assert len(figures) == 12
    Select(browser.find_element(By.ID, "group-by")).select_by_visible_text("place")
    wait_for(lambda: "one per place" in browser.find_element(By.ID, "status").text)
    figures = searched(browser)
    places = [c.split("place\n")[1].split("\n")[0] for c in captions(figures)]
    assert sorted(places) == sorted(PLACES)  # one result per place
    Select(browser.find_element(By.ID, "group-by")).select_by_visible_text("none")
    figures = wait_for(lambda: len(loaded_results(browser) or []) == 12 and loaded_results(browser))
    scores = [float(re.search(r"score ([-\d.]+\d)", c)[1]) for c in captions(figures)]
    floor = scores[4]
    box = browser.find_element(By.ID, "min-score")
    box.send_keys(f"{floor:.3f}\t")
    wait_for(lambda: len(loaded_results(browser) or []) < 12)
    figures = loaded_results(browser)
    kept = [float(re.search(r"score ([-\d.]+\d)", c)[1]) for c in captions(figures)]
    assert kept and min(kept) >= floor - 0.001 and len(kept) <= 6


def test_a_phone_shows_the_fields_too(browser, library):
    url, _, _ = library
    open_page(browser, url, width=400)
    figures = wait_for(lambda: loaded_results(browser))
    inner = browser.execute_script("return window.innerWidth")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= inner
    browser.execute_script("arguments[0].scrollIntoView()", figures[0])
    assert "place" in figures[0].text and figures[0].find_element(By.TAG_NAME, "dl").is_displayed()
    shot(browser, "phone-fields")
    figures[0].find_element(By.CSS_SELECTOR, ".actions button").click()
    wait_for(lambda: browser.find_element(By.ID, "viewer").is_displayed())
    assert "camera" in browser.find_element(By.ID, "viewer-fields").text
    shot(browser, "phone-full-size")
    browser.find_element(By.ID, "viewer-close").click()
