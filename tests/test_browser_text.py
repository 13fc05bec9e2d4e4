"""Text queries on the page, in a real headless Chromium: a CLIP collection shows a text box,
words typed there bring k captioned results; an image-only collection shows none. Leaves a
screenshot in test-artifacts/text-search.png."""

import pytest

from lookalike.cli.web import create_app
from lookalike.embed.embedder import Embedder
from lookalike.ingest import ingest
from lookalike.search import Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from tests.live import serving
from tests.test_browser import ARTIFACTS, browser, loaded_results, wait_for  # noqa: F401


@pytest.fixture(scope="module")
def collections(tmp_path_factory, image_folder, tiny_clip, tiny_vit):
    """The colour folder ingested twice: with a CLIP and with a ViT."""
    store = connect(StoreConfig(path=str(tmp_path_factory.mktemp("page-text") / "store")))
    searchers = {}
    for name, model in (("clip", tiny_clip), ("vit", tiny_vit)):
        emb = Embedder(model, device="cpu", precision="fp32")
        ingest(load_source(str(image_folder)), emb, store, name)
        searchers[name] = Searcher(name, store=store, embedder=emb)
    yield searchers
    store.close()


def open_page(driver, url):
    from selenium.webdriver.common.by import By

    driver.get(url)
    wait_for(lambda: "images" in driver.find_element(By.ID, "about").text)


def test_words_typed_on_the_page_find_images(browser, collections):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    searcher = collections["clip"]
    with serving(create_app(searcher)) as url:
        open_page(browser, url)
        box = browser.find_element(By.ID, "text")
        assert box.is_displayed()
        box.send_keys("a red flower", Keys.ENTER)
        figures = wait_for(lambda: loaded_results(browser))
        captions = [f.find_element(By.TAG_NAME, "figcaption").text for f in figures]
        expected = searcher.search_text("a red flower", k=12)  # the page's default k
        assert len(figures) == len(expected) > 0
        assert [c.split("\n")[0] for c in captions] == [
            f"#{h.rank} {h.label_name}" for h in expected
        ]
        assert "a red flower" in browser.find_element(By.TAG_NAME, "main").text  # the query
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "text-search.png"))

        # A long query is cut by the model, and the page says so.
        box.clear()
        box.send_keys(" ".join(["blue"] * 40), Keys.ENTER)
        status = browser.find_element(By.ID, "status")
        wait_for(lambda: "tokens long" in status.text)


def test_an_image_only_collection_shows_no_text_box(browser, collections):  # noqa: F811
    from selenium.webdriver.common.by import By

    with serving(create_app(collections["vit"])) as url:
        open_page(browser, url)
        assert not browser.find_element(By.ID, "text").is_displayed()
