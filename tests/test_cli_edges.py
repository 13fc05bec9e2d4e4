"""The command line at its edges: secrets never shown, odd inputs refused in one line before
anything loads, results kept when a picture cannot be written, names that cannot forge lines,
and nothing overwritten without being asked."""

import io
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lookalike.cli.main import cli
from lookalike.errors import OutputExists
from lookalike.tune import check_output
from tests.conftest import make_image
from tests.peak import peak_mb
from tests.stub_qdrant import StubQdrant


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def built(tmp_path_factory, image_folder, tiny_vit):
    store = ["--qdrant-path", tmp_path_factory.mktemp("edges") / "store", "--collection", "c"]
    result = run("ingest", "--dataset", image_folder, "--model", tiny_vit, *store)
    assert result.exit_code == 0, result.output
    return store


def one_line_error(result, code=1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.stderr


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://admin:S3CRETPW@127.0.0.1:99999", "its port must be a number from 0 to 65535"),
        ("http://admin:S3CRETPW@127.0.0.1:99x", "its port must be a number from 0 to 65535"),
        ("ftp://admin:S3CRETPW@qdrant.example", "it must start with http:// or https://"),
        ("qdrant.example:6333", "it must start with http:// or https://"),
        ("http://admin:S3CRETPW@[::1", "it does not parse"),
    ],
)
def test_a_bad_url_is_one_line_and_never_shows_its_password(url, message):
    result = run("info", "--qdrant-url", url)
    err = one_line_error(result)
    assert f"is not valid: {message}" in err
    assert "S3CRET" not in result.output


CRASH = """
import sys
from lookalike.cli import main
from lookalike.cli.options import store_options

@main.cli.command()
@store_options
def crash(store_config, collection):  # a bug whose message quotes the configuration
    raise RuntimeError(f"cannot use {store_config.url} with key {store_config.api_key}")

sys.argv = ["lookalike", "crash", *sys.argv[1:]]
main.main()
"""


def test_the_entry_point_hides_secrets_even_in_a_crash(tmp_path):
    """A bug's traceback is printed (it helps), with every secret the user gave replaced."""
    key = tmp_path / "key"
    key.write_text("k3y-from-file\n")
    url = "https://admin:pa55word@qdrant.example"
    args = ["--qdrant-url", url, "--qdrant-api-key-file", key]
    result = subprocess.run(
        [sys.executable, "-c", CRASH, *map(str, args)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RuntimeError: cannot use" in result.stderr
    assert "k3y-from-file" not in result.stderr and "pa55word" not in result.stderr
    assert "https://admin:***@qdrant.example with key ***" in result.stderr


class HTMLServer:
    """Something that is not Qdrant answering at the URL: a web server's welcome page."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                body = b"<html><body>Welcome to nginx!</body></html>"
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_server_answering_html_is_one_line():
    html = HTMLServer()
    try:
        result = run("info", "--qdrant-url", html.url)
    finally:
        html.server.shutdown()
    err = one_line_error(result)
    # No --collection: the store's only one is looked for, so listing is the first request.
    assert f"Qdrant at {html.url} failed to list collections" in err
    assert "is it a Qdrant server" in err


def refuse_key(method, path, n):
    return 401


@pytest.mark.parametrize("stub", [refuse_key], indirect=True)
def test_the_api_key_can_come_from_a_file(stub, tmp_path):
    key = tmp_path / "qdrant.key"
    key.write_text("s3cret-in-a-file\n")
    env = {"LOOKALIKE_QDRANT_API_KEY_FILE": str(key)}  # or --qdrant-api-key-file
    result = run("info", "--qdrant-url", stub.url, env=env)
    err = one_line_error(result)
    assert "refused the API key" in err and "s3cret" not in result.output
    assert stub.requests[-1]["headers"].get("api-key") == "s3cret-in-a-file"
    both = run("info", "--qdrant-api-key", "x", "--qdrant-api-key-file", key)
    assert both.exit_code == 2 and "not both" in both.stderr
    (tmp_path / "empty").write_text("\n")
    empty = run("info", "--qdrant-api-key-file", tmp_path / "empty")
    assert empty.exit_code == 2 and "is empty" in empty.stderr


@pytest.fixture
def stub(request):
    server = StubQdrant(request.param)
    yield server
    server.close()


@pytest.mark.parametrize(
    "grid, message",
    [
        ("missing/out.png", "the folder"),
        ("out.webm", "cannot write a .webm picture"),
    ],
)
def test_a_grid_that_cannot_be_written_is_refused_before_loading(built, grid, message):
    result = run("search", "train:0", "--grid", grid, *built)
    assert result.exit_code == 2 and message in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_a_grid_without_extension_is_a_png(built, tmp_path):
    result = run("search", "train:0", "--grid", tmp_path / "grid", *built)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "grid").format == "PNG"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="writes to /dev/full")
def test_results_are_printed_before_a_picture_fails(built):
    result = run("search", "train:0", "--json", "--grid", "/dev/full", *built)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert json.loads(result.stdout.splitlines()[0])["query"] == "train:0"  # kept
    assert "/dev/full" in result.stderr


def test_a_skipped_log_in_a_missing_folder_fails_before_the_model_loads(image_folder):
    # No --model: the default hub model is unreachable offline, so reaching it would fail
    # differently; the path is refused first.
    result = run("ingest", "--dataset", image_folder, "--skipped-log", "nowhere/skips.jsonl")
    assert result.exit_code == 2 and "--skipped-log" in result.stderr
    assert "does not exist" in result.stderr and "could not load model" not in result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="writes to /dev/full")
def test_a_skipped_log_that_cannot_be_written_is_one_line(tmp_path, tiny_vit):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    make_image((9, 9, 9), seed=1).save(tmp_path / "imgs" / "a" / "ok.png")
    (tmp_path / "imgs" / "a" / "bad.jpg").write_text("not an image")
    args = ["ingest", "--dataset", tmp_path / "imgs", "--model", tiny_vit]
    result = run(*args, "--qdrant-path", tmp_path / "s", "--skipped-log", "/dev/full")
    err = one_line_error(result)
    assert "cannot write /dev/full: No space left on device" in err
    assert "run the same command again to resume" in err


@pytest.mark.parametrize("label", ["²", "9" * 5000, "99999999999999999999"])
def test_odd_labels_are_one_line(built, label):
    err = one_line_error(run("search", "train:0", "--label", label, *built))
    assert "label" in err and len(err) < 400


def test_a_bomb_query_quotes_our_limit_and_no_flag_search_lacks(built, tmp_path):
    Image.new("1", (20_000, 20_000)).save(tmp_path / "wide.png")
    err = one_line_error(run("search", tmp_path / "wide.png", *built))
    assert "too many pixels (400,000,000 > 89,478,485)" in err
    assert "--max-pixels" not in err and "178956970" not in err


def test_names_with_newlines_cannot_forge_lines(tmp_path, tiny_vit):
    folder = tmp_path / "imgs" / "cats"
    folder.mkdir(parents=True)
    make_image((9, 9, 9), seed=1).save(folder / "ok.png")
    (folder / "evil.jpg\nwarning: all images verified.jpg").write_text("not an image")
    result = run(
        "ingest",
        "--dataset",
        tmp_path / "imgs",
        "--model",
        tiny_vit,
        "--qdrant-path",
        tmp_path / "s",
    )
    assert result.exit_code == 0, result.output
    for stream in (result.stderr, result.stdout):
        lines = stream.replace("\r", "\n").splitlines()
        assert not any(line.startswith("warning: all images verified") for line in lines)
    assert "evil.jpg\\nwarning: all images verified.jpg'" in result.stderr


def test_tune_refuses_a_folder_that_holds_files(tmp_path, tiny_vit):
    out = tmp_path / "tuned"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["tune", "--model", tiny_vit, "--dataset", tmp_path / "nowhere", "--output", out]
    err = one_line_error(run(*args))
    assert f"{out} already holds files (notes.txt)" in err and "--overwrite" in err
    assert (out / "notes.txt").read_text() == "mine"
    check_output(str(out), overwrite=True)  # asked for: allowed
    check_output(str(tmp_path / "new"))  # a new folder: allowed
    with pytest.raises(OutputExists) as refused:
        check_output(str(out))
    assert refused.value.files == ("notes.txt",)


def photo(megapixels: float) -> bytes:
    """A smooth, photo-like JPEG of that many pixels: under a MB, decoded 3 bytes a pixel."""
    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    small = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8))
    buf = io.BytesIO()
    small.resize((width, int(megapixels * 1e6 / width)), Image.BICUBIC).save(buf, "JPEG")
    return buf.getvalue()


def test_a_folder_of_photos_as_queries_takes_bounded_memory(built, tmp_path):
    """`lookalike search photos/*.jpg --grid`: 16 queries of 8 MP cost a few photos' memory,
    not sixteen (they were all decoded at once, and the grid kept every candidate whole)."""
    data = photo(8)
    queries = []
    for i in range(16):
        queries.append(tmp_path / f"q{i}.jpg")
        queries[-1].write_bytes(data)
    one = peak_mb("search", queries[0], *built)
    many = peak_mb("search", *queries, "--grid", tmp_path / "grid.png", *built)
    assert many - one < 700, f"16 queries took {many - one:.0f} MB more than one"
    assert Image.open(tmp_path / "grid.png").size[1] > 16 * 192  # one row per query
