"""What `serve` refuses before it costs anything: foreign Host names (DNS rebinding), bodies
over the limit however they are framed, more images at once than memory allows; and labels or
images it cannot use, each a clean 4xx naming our own limits."""

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.cli.web import create_app
from lookalike.embed.embedder import Embedder
from lookalike.ingest import ingest
from lookalike.search import Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from lookalike.store.holders import process_token
from tests.conftest import make_image


def built_store(folder, image_folder, tiny_vit):
    path = folder / "store"
    with connect(StoreConfig(path=str(path))) as store:
        emb = Embedder(tiny_vit, device="cpu", precision="fp32")
        ingest(load_source(str(image_folder)), emb, store, "colours")
    return path


@pytest.fixture(scope="module")
def store_path(tmp_path_factory, image_folder, tiny_vit):
    return built_store(tmp_path_factory.mktemp("guards"), image_folder, tiny_vit)


@pytest.fixture(scope="module")
def searcher(store_path, tiny_vit):
    store = connect(StoreConfig(path=str(store_path)))
    yield Searcher("colours", store=store, embedder=Embedder(tiny_vit, device="cpu"))
    store.close()


def png(size=48) -> bytes:
    buf = io.BytesIO()
    make_image((40, 60, 200), seed=7, size=size).save(buf, "PNG")
    return buf.getvalue()


def client_for(app, host="localhost") -> TestClient:
    return TestClient(app, base_url=f"http://{host}")


@pytest.mark.parametrize(
    "host, allowed, status",
    [
        ("localhost:8000", (), 200),
        ("127.0.0.1:8000", (), 200),
        ("[::1]:8000", (), 200),
        ("192.168.1.20:8000", (), 200),  # an address names no site: nothing to rebind
        ("attacker.example:8000", (), 400),  # a rebound name
        ("localhost.attacker.example", (), 400),
        ("photos.lan:8000", ("photos.lan",), 200),
        ("PHOTOS.LAN.", ("photos.lan",), 200),
    ],
)
def test_only_configured_host_names_are_served(searcher, host, allowed, status):
    client = client_for(create_app(searcher, allowed_hosts=allowed))
    for method, path in [("GET", "/health"), ("GET", "/"), ("POST", "/search")]:
        files = {"image": ("q.png", png())} if method == "POST" else None
        response = client.request(method, path, headers={"host": host}, files=files)
        assert response.status_code == status, (path, response.text)
    if status == 400:
        assert "--allowed-host" in response.json()["detail"]


def bomb(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, "PNG")  # tiny on the wire
    return buf.getvalue()


@pytest.mark.parametrize(
    "data, detail",
    [
        (bomb(20_000, 20_000), "upload: too many pixels (400,000,000 > 1,000,000)"),
        (bomb(1_100, 1_000), "upload: too many pixels (1100x1000 = 1,100,000 > 1,000,000)"),
    ],
    ids=["past-pil-limit", "past-ours"],
)
def test_too_many_pixels_quotes_the_servers_limit(searcher, data, detail):
    client = client_for(create_app(searcher, max_pixels=1_000_000))
    response = client.post("/search", files={"image": ("q.png", data)})
    assert response.status_code == 400 and response.json()["detail"] == detail


@pytest.mark.parametrize("label", ["²", "٣", "9" * 5000, "99999999999999999999", "-1", "1.5"])
def test_odd_labels_are_a_clean_400(searcher, label):
    client = client_for(create_app(searcher))
    response = client.post("/search", files={"image": ("q.png", png())}, data={"label": label})
    assert response.status_code == 400
    assert "label" in response.json()["detail"] and len(response.json()["detail"]) < 300


def test_a_busy_server_says_when_to_come_back(searcher):
    app = create_app(searcher, decoding=1, queue=0)
    client, release = client_for(app), threading.Event()
    holder = threading.Thread(target=app.state.admission.run, args=(release.wait,))
    holder.start()  # another request is decoding a huge photo
    try:
        busy = client.post("/search", files={"image": ("q.png", png())})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
        assert "try again" in busy.json()["detail"]
    finally:
        release.set()
        holder.join()
    assert client.post("/search", files={"image": ("q.png", png())}).status_code == 200


@pytest.fixture(scope="module")
def live(searcher):
    """A real uvicorn server: the body limit must hold on the wire, not only in TestClient."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(searcher, max_upload=1024 * 1024)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def test_a_chunked_upload_is_cut_off_at_the_limit(live):
    head = (
        "POST /search HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    )
    chunk = b"x" * 65536
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", live), timeout=30) as conn:
        part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="q"\r\n\r\n'
        conn.sendall(head.encode() + b"%x\r\n%s\r\n" % (len(part), part))
        conn.settimeout(0.01)
        with contextlib.suppress(OSError):  # the server closed the connection: it stopped
            while sent < 200 * 2**20 and not answer:  # a client that would send 200 MB
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                with contextlib.suppress(TimeoutError):
                    answer = conn.recv(4096)
        conn.settimeout(10)
        while b"}" not in answer:  # the end of the JSON body
            more = conn.recv(4096)
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"larger than 1 MiB" in answer
    assert sent < 8 * 2**20  # read up to the limit, not the whole body


def test_search_and_images_still_work_on_the_wire(live):
    url = f"http://127.0.0.1:{live}"
    hits = httpx.post(f"{url}/search", files={"image": ("q.png", png())}).json()["hits"]
    assert hits[0]["label_name"] == "blue"
    assert httpx.get(f"{url}/points/{hits[0]['id']}/image").status_code == 200
    big = httpx.post(f"{url}/search", files={"image": ("q.png", os.urandom(2 * 2**20))})
    assert big.status_code == 413


def photo(megapixels: float) -> bytes:
    """A smooth, photo-like JPEG of that many pixels: under a MB, decoded 3 bytes a pixel."""
    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    small = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8))
    buf = io.BytesIO()
    small.resize((width, int(megapixels * 1e6 / width)), Image.BICUBIC).save(buf, "JPEG")
    return buf.getvalue()


def vm_peak_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux)")
def test_parallel_phone_photos_take_bounded_memory(tmp_path, image_folder, tiny_vit):
    """12 clients each upload a 12 MP photo at once: the server's peak memory grows by a
    bounded amount (two images in progress), not by twelve decoded photos."""
    store_path = built_store(tmp_path, image_folder, tiny_vit)  # its own: one process a store
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "lookalike.cli", "serve", "--port", str(port)]
    command += ["--qdrant-path", str(store_path), "--collection", "colours"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                httpx.get(f"{url}/health", timeout=5).raise_for_status()
                break
            except httpx.HTTPError:
                if server.poll() is not None:
                    pytest.fail(f"serve stopped: {server.communicate()[1][-2000:]}")
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        data = photo(12)
        httpx.post(f"{url}/search", files={"image": ("q.jpg", photo(0.5))}, timeout=60)
        before = vm_peak_mb(server.pid)

        def post(_):
            files = {"image": ("q.jpg", data, "image/jpeg")}
            return httpx.post(f"{url}/search", files=files, timeout=300).status_code

        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(post, range(12)))
        # The server's own peak, read while it runs: wait4's ru_maxrss would also count this
        # test process, whose memory the child shares until it execs (large late in a suite).
        grown = vm_peak_mb(server.pid) - before
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            server.wait()
    assert statuses == [200] * 12  # all answered: the queue holds them
    # One 12 MP photo takes ~160 MB while it is decoded and prepared; twelve at once took
    # ~1.4 GB before the bound.
    assert grown < 600, f"peak memory grew by {grown:.0f} MB"


@pytest.mark.parametrize(
    "client, host, status",
    [
        ("127.0.0.1", "127.0.0.1:8000", 200),
        ("::1", "[::1]:8000", 200),
        ("127.0.0.1", "localhost:8000", 200),
        ("192.168.1.20", "192.168.1.20:8000", 403),  # another machine of the network
        ("127.0.0.1", "photos.lan", 403),  # a page of that site, rebound to this machine
    ],
)
def test_the_servers_paths_are_told_to_its_own_machine_only(searcher, client, host, status):
    app = create_app(searcher, allowed_hosts=("photos.lan",))
    asker = TestClient(app, base_url="http://localhost", client=(client, 5000))
    token = {"x-lookalike-token": process_token()}  # as recorded in the store by serve
    for path in ("/collection", "/collection/tracked?split=train"):
        response = asker.get(path, headers={"host": host, **token})
        assert response.status_code == status, (path, response.text)
        # a proxy on this machine forwarding someone else's request
        proxied = {"host": host, "x-forwarded-for": "203.0.113.9", **token}
        assert asker.get(path, headers=proxied).status_code == 403
        # a client that cannot read the store, so does not know the token
        for wrong in ({}, {"x-lookalike-token": "guess"}):
            assert asker.get(path, headers={"host": host, **wrong}).status_code == 403
    if status == 403:
        assert "own machine" in response.json()["detail"]


def test_stored_points_come_in_pages_of_bounded_size(searcher, monkeypatch):
    from lookalike.cli import local_routes

    monkeypatch.setattr(local_routes, "MAX_TRACKED_BYTES", 1)  # one point a page
    asker = TestClient(create_app(searcher), base_url="http://127.0.0.1", client=("127.0.0.1", 1))
    asker.headers["x-lookalike-token"] = process_token()
    pages, offset = [], None
    while True:
        query = {"split": "train", "limit": 5} | ({"offset": offset} if offset else {})
        page = asker.get("/collection/tracked", params=query).json()
        pages.append(page["points"])
        offset = page["next"]
        if offset is None:
            break
    assert {len(p) for p in pages[:-1]} == {1}
    want = {t.id: t.payload for t in searcher.store.tracked("colours", "train")}
    assert {p["id"]: p["payload"] for page in pages for p in page} == want
    bad = asker.get("/collection/tracked", params={"split": "train", "offset": "x"})
    assert bad.status_code in (400, 422)
    for split in ("", "nope", "\x00", "é" * 256):
        none = asker.get("/collection/tracked", params={"split": split})
        assert none.status_code == 200 and none.json() == {"points": [], "next": None}


def test_a_held_store_whose_url_answers_something_else_is_not_asked(tmp_path):
    """The URL a holder recorded may now be another program's (a store on a shared disk, a
    reused port): its answers are not taken for a serve's."""
    from lookalike.errors import StoreLocked
    from lookalike.store.served import ServedStore
    from tests.stub_qdrant import StubQdrant

    other = StubQdrant(lambda method, path, n: {"hello": "world"})
    record = {"pid": 1, "command": "serve", "collection": "c", "url": other.url + "/"}
    (tmp_path / "holders").mkdir()
    (tmp_path / "holders" / "1.json").write_text(json.dumps(record | {"token": "t"}))
    try:
        error = StoreLocked(str(tmp_path), "c", pid=1, command="serve", url=other.url + "/")
        assert ServedStore.asked(error, StoreConfig(path=str(tmp_path)), "c") is None
    finally:
        other.close()
