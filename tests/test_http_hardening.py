"""HTTP hardening from the red-team pass: a refused chunked upload closes its connection,
Host headers that smuggle another name, cross-site POSTs, filters and JSON bodies too deep
or too big, ranges with NaN or null bounds, and connections that never finish their headers."""

import contextlib
import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient

from lookalike.cli.guards import MAX_JSON, header_timeout_protocol, json_depth
from lookalike.cli.web import create_app
from lookalike.embed.embedder import Embedder
from lookalike.ingest import ingest
from lookalike.search import Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect


@pytest.fixture(scope="module")
def searcher(tmp_path_factory, image_folder, tiny_vit):
    store = connect(StoreConfig(path=str(tmp_path_factory.mktemp("hard") / "store")))
    embedder = Embedder(tiny_vit, device="cpu")
    ingest(load_source(str(image_folder)), embedder, store, "colours")
    yield Searcher("colours", store=store, embedder=embedder)
    store.close()


@pytest.fixture(scope="module")
def client(searcher):
    return TestClient(create_app(searcher, max_upload=1024 * 1024), base_url="http://localhost")


@pytest.fixture(scope="module")
def live(searcher):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(searcher, max_upload=1024 * 1024)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="error", http=header_timeout_protocol(0.5)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _closed(conn: socket.socket, within: float) -> bool:
    """Whether the server closes the connection within `within` seconds."""
    conn.settimeout(within)
    try:
        while conn.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_a_refused_chunked_upload_closes_the_connection(live):
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
        with contextlib.suppress(OSError):
            while sent < 200 * 2**20 and not answer:
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                with contextlib.suppress(TimeoutError):
                    answer = conn.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower()
        closed = _closed(conn, 5)
        with contextlib.suppress(OSError):  # the server reads no more of it
            for _ in range(200):
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
    assert closed and sent < 30 * 2**20


def test_headers_that_never_finish_are_cut_off(live):
    with socket.create_connection(("127.0.0.1", live), timeout=10) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        started = time.monotonic()
        for _ in range(3):  # a header line now and then, never the end
            with contextlib.suppress(OSError):
                conn.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.2)
        assert _closed(conn, 5) and time.monotonic() - started < 3
    with socket.create_connection(("127.0.0.1", live), timeout=10) as conn:  # others answered
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    "host", ["localhost:18731@evil.com", "127.0.0.1:18731, evil.com", "localhost:x", "a b"]
)
def test_host_headers_smuggling_another_name_are_refused(client, host):
    response = client.get("/health", headers={"Host": host})
    assert response.status_code == 400 and "host name" in response.json()["detail"]


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"Origin": "http://evil.example"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}, 200),
        ({}, 200),  # a program: no browser headers
    ],
)
def test_cross_site_posts_are_refused(client, headers, status):
    response = client.post("/search", data={"query": "train:0", "k": "1"}, headers=headers)
    assert response.status_code == status, response.text
    if status == 403:
        assert "other sites" in response.json()["detail"]


def _deep(n: int) -> dict:
    f = {"key": "label", "match": {"value": 1}}
    for _ in range(n):
        f = {"must": [f]}
    return f


def _point(client) -> str:
    return client.post("/search", data={"query": "train:0", "k": "1"}).json()["hits"][0]["id"]


def test_filters_too_deep_or_too_big_are_a_400_on_every_endpoint(client):
    deep = json.dumps(_deep(300))
    search = client.post("/search", data={"query": "train:0", "filter": deep})
    assert search.status_code == 400 and "levels deep" in search.json()["detail"]
    body = {"positive": [_point(client)], "filter": _deep(40)}
    reco = client.post("/recommend", json=body)
    assert reco.status_code == 400 and "levels deep" in reco.json()["detail"]
    wide = {"should": [{"key": "label", "match": {"value": i}} for i in range(3000)]}
    reco = client.post("/recommend", json={"positive": [_point(client)], "filter": wide})
    assert reco.status_code == 400 and "parts" in reco.json()["detail"]


def test_a_json_body_too_deep_or_too_big_is_refused_unparsed(client):
    text = "[" * 100_000 + "]" * 100_000
    deep = client.post("/recommend", content=text, headers={"Content-Type": "application/json"})
    assert deep.status_code == 400 and "levels deep" in deep.json()["detail"]
    big = json.dumps({"positive": ["x"], "label": "x" * (MAX_JSON + 1000)})
    response = client.post("/recommend", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "KiB" in response.json()["detail"]
    assert json_depth(b'{"a": "[[[[", "b": [[1]]}') == 3  # brackets in strings do not count


@pytest.mark.parametrize("bound", ["NaN", "null", "Infinity"])
def test_ranges_with_nan_or_null_bounds_are_refused_in_words(client, bound):
    flt = '{"must": [{"key": "label", "range": {"gte": BOUND}}]}'.replace("BOUND", bound)
    response = client.post("/search", data={"query": "train:0", "filter": flt})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "range" in detail and "Helper" not in detail


def test_the_cli_says_a_deep_filter_in_one_line(tmp_path, image_folder, tiny_vit):
    from click.testing import CliRunner

    from lookalike.cli.main import cli

    store = ["--qdrant-path", str(tmp_path / "store"), "--collection", "c"]
    args = ["ingest", "--dataset", str(image_folder), "--model", tiny_vit, *store]
    assert CliRunner().invoke(cli, args).exit_code == 0
    result = CliRunner().invoke(
        cli, ["search", "train:0", "--filter", json.dumps(_deep(300)), *store]
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "levels deep" in result.output
