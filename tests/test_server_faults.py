"""A Qdrant server that fails, drops connections, stalls or refuses the key: bounded retries,
then one clear failure; a partial ingest says what was stored; the key is never shown."""

import json

import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.errors import StoreUnavailable
from lookalike.store import StoreConfig, connect
from tests.stub_qdrant import StubQdrant

EXISTS = ("GET", "/collections/c/exists")


@pytest.fixture
def stub(request):
    server = StubQdrant(request.param)
    yield server
    server.close()


def store_for(stub, **kwargs):
    config = StoreConfig(url=stub.url, retries=2, backoff=0.01, check_compatibility=False, **kwargs)
    return connect(config)


def always(action):
    return lambda method, path, n: action


def fail_then_ok(method, path, n):
    return 503 if n <= 2 else {"exists": True}


@pytest.mark.parametrize("stub", [fail_then_ok], indirect=True)
def test_transient_errors_are_retried_until_they_pass(stub):
    with store_for(stub) as store:
        assert store.exists("c") is True
    assert stub.count(*EXISTS) == 3


@pytest.mark.parametrize(
    "stub, message",
    [
        (always(503), "after 3 attempts: HTTP 503"),
        (always(500), "after 3 attempts: HTTP 500"),
        (always("drop"), "after 3 attempts: RemoteProtocolError"),
    ],
    indirect=["stub"],
)
def test_persistent_failure_is_bounded_and_clear(stub, message):
    with store_for(stub) as store, pytest.raises(StoreUnavailable) as err:
        store.exists("c")
    assert f"Qdrant at {stub.url} failed to check collection 'c' {message}" in str(err.value)
    assert stub.count(*EXISTS) == 3


@pytest.mark.parametrize("stub", [always(("sleep", 3))], indirect=True)
def test_a_stalled_server_times_out(stub):
    with store_for(stub, timeout=1) as store, pytest.raises(StoreUnavailable, match="Timeout"):
        store.exists("c")


@pytest.mark.parametrize("stub", [always(401)], indirect=True)
def test_a_refused_key_is_not_retried(stub):
    with store_for(stub, api_key="wrong") as store, pytest.raises(StoreUnavailable) as err:
        store.exists("c")
    assert "refused the API key" in str(err.value) and "wrong" not in str(err.value)
    assert stub.count(*EXISTS) == 1


def flaky_upserts(method, path, n):
    """A server where the collection is new and the third upsert onwards fails."""
    if path == "/":
        return {"title": "qdrant", "version": "1.18.0"}
    if path == "/collections/c/exists":
        return {"exists": False}
    if method == "PUT" and path == "/collections/c":
        return True
    if method == "PUT" and path == "/collections/c/index":  # the label index
        return {"operation_id": 0, "status": "completed"}
    if method == "PUT" and path == "/collections/c/points":
        return {"operation_id": n, "status": "completed"} if n <= 2 else 503
    if method == "POST" and path == "/collections/c/points":  # resume's look-up: none stored
        return []
    return 404


@pytest.mark.parametrize("stub", [flaky_upserts], indirect=True)
def test_partial_ingest_says_what_was_stored_and_never_shows_the_key(
    stub, image_folder, tiny_vit, monkeypatch
):
    monkeypatch.setenv("LOOKALIKE_QDRANT_API_KEY", "s3cret-key")
    args = [
        "ingest",
        "--dataset",
        image_folder,
        "--model",
        tiny_vit,
        "--batch-size",
        4,
        "--collection",
        "c",
        "--qdrant-url",
        stub.url,
    ]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 1
    err = result.stderr
    assert "failed to store 4 points after 5 attempts: HTTP 503" in err
    assert "storing images red/red_0.jpg..red/red_3.jpg failed; the 8 images before them" in err
    assert "Run the same command again to resume" in err
    assert "warning: the Qdrant API key is sent over plain HTTP" in err
    assert "s3cret-key" not in result.output
    upserts = [
        r for r in stub.requests if (r["method"], r["path"]) == ("PUT", "/collections/c/points")
    ]
    assert len(upserts) == 2 + 5  # two stored, then the bounded retries of the third
    assert all(r["headers"].get("api-key") == "s3cret-key" for r in upserts)
    body = json.loads(upserts[0]["body"])
    assert len(body["batch"]["ids"]) == 4 and body["batch"]["payloads"][0]["split"] == "train"


def test_config_repr_hides_the_key():
    config = StoreConfig(url="https://user:pw@qdrant.example:6333", api_key="k3y")
    assert "k3y" not in repr(config)
    assert config.location == "https://qdrant.example:6333"
    assert not config.insecure_key
    assert StoreConfig(url="http://qdrant.example:6333", api_key="k3y").insecure_key


def test_an_unreachable_server_fails_after_bounded_retries():
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = StoreConfig(
        url=f"http://127.0.0.1:{port}", retries=2, backoff=0.01, check_compatibility=False
    )
    with connect(config) as store, pytest.raises(StoreUnavailable) as err:
        store.exists("c")
    assert "after 3 attempts: ConnectError" in str(err.value)


def test_https_url_talks_tls():
    config = StoreConfig(url="https://127.0.0.1:6333", api_key="k", check_compatibility=False)
    with connect(config) as store:
        assert store.client._client.rest_uri.startswith("https://")  # qdrant-client's own URL
