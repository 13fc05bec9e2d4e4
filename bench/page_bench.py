"""What the search page weighs and how soon it shows results, on 12-MP camera photos.

    python bench/page_bench.py --dataset ../shared/data/beans \
        --model ../shared/models/efficientnet-lite0 [--photos 24]

Makes 4032x3024 JPEGs (~1.7-2 MB, like a phone's) from real Beans images, ingests them, serves
the page as `lookalike serve` does (thumbnails kept beside the store) and reports:

- bytes of one page of 12 results: the 12 thumbnails the page loads, against the 12 originals
  (files on disk, and as GET /points/{id}/image sends them) that it loaded before;
- in headless Chromium (Debian's chromium and chromium-driver), the time from opening the page
  to its first pictures shown (the collection browsed, before any query), with thumbnails
  made on the spot (first visit) and kept (later visits), and from choosing a photo to its
  12 results shown.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SHOWN = """
const imgs = [...document.querySelectorAll('#results figure img')];
const visible = imgs.filter((i) => i.getBoundingClientRect().top < innerHeight);
return visible.length > 0 && visible.every((i) => i.complete && i.naturalWidth > 0)
  && document.getElementById('status').textContent.includes(arguments[0]);
"""


def make_photos(dataset: str, folder: Path, n: int) -> None:
    import datasets

    from tests.conftest import make_photo

    folder.mkdir(parents=True, exist_ok=True)
    rows = datasets.load_dataset(dataset, split="train").select(range(0, 1034, 1034 // n)[:n])
    for i, row in enumerate(rows):
        make_photo(row["image"], seed=i).save(folder / f"IMG_{i:04d}.jpg", quality=92)


def wait(driver, text: str, timeout: float = 120.0) -> float:
    start = time.perf_counter()
    while not driver.execute_script(SHOWN, text):
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"the page did not show {text!r}")
        time.sleep(0.01)
    return time.perf_counter() - start


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared/data/beans"))
    parser.add_argument("--model", default=str(ROOT.parent / "shared/models/efficientnet-lite0"))
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--workdir", default=None, help="keep the photos here between runs")
    args = parser.parse_args()

    from lookalike.cli.web import create_app
    from lookalike.embed import ModelSettings
    from lookalike.ingest import ingest
    from lookalike.search import Searcher
    from lookalike.source import load_source
    from lookalike.store import StoreConfig, connect
    from lookalike.thumbnails import Thumbnails, cache_folder
    from tests.live import serving

    work = Path(args.workdir or tempfile.mkdtemp(prefix="page-bench-"))
    photos = work / "photos"
    if not photos.is_dir() or len(list(photos.glob("*.jpg"))) < args.photos:
        make_photos(args.dataset, photos, args.photos)
    store_path = work / "store"
    shutil.rmtree(store_path, ignore_errors=True)
    store = connect(StoreConfig(path=str(store_path)))
    ingest(load_source(str(photos)), ModelSettings(model=args.model), store, "photos")
    searcher = Searcher("photos", store=store)
    searcher.embedder  # noqa: B018 - loaded at start-up, as serve does
    app = create_app(searcher, thumbnails=Thumbnails(cache_folder(str(store_path))))
    report: dict = {"photos": args.photos}
    with serving(app) as url:
        query = next(photos.glob("*.jpg"))
        with open(query, "rb") as fp:
            data = fp.read()
        driver = chromium()
        try:
            for visit in ("first", "later"):  # thumbnails made, then kept
                driver.get("about:blank")
                driver.execute_cdp_cmd("Network.clearBrowserCache", {})
                start = time.perf_counter()
                driver.get(url)
                report[f"first_pictures_s_{visit}_visit"] = round(
                    time.perf_counter() - start + wait(driver, "images 1"), 3
                )
            start = time.perf_counter()
            driver.find_element("id", "file").send_keys(str(query))
            report["upload_to_12_results_s"] = round(
                time.perf_counter() - start + wait(driver, "12 most similar"), 3
            )
            loaded = driver.execute_script(
                "return performance.getEntriesByType('resource')"
                ".filter((e) => e.name.includes('/thumbnail')).length"
            )
            report["thumbnails_loaded_by_the_page"] = loaded
        finally:
            driver.quit()
        body = _search(url, data)
        hits = body["hits"]
        thumbs = [_get(url + h["thumbnail"]) for h in hits]
        originals = [_get(url + h["image"]) for h in hits]
        on_disk = [os.path.getsize(photos / h["path"]) for h in hits]
    store.close()
    mb = 1024 * 1024
    report.update(
        results=len(hits),
        thumbnail_bytes_per_page_mb=round(sum(map(len, thumbs)) / mb, 3),
        original_files_per_page_mb=round(sum(on_disk) / mb, 2),
        image_endpoint_per_page_mb=round(sum(map(len, originals)) / mb, 2),
        thumbnail_kb_each=round(sum(map(len, thumbs)) / len(thumbs) / 1024, 1),
    )
    print(json.dumps(report, indent=1))


def _search(url: str, image: bytes) -> dict:
    boundary = "pagebench"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n12\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url + "search", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request) as r:
        return json.load(r)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url) as r:
        return r.read()


if __name__ == "__main__":
    main()
