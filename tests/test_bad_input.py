"""Images nobody curated: each bad one is skipped with a message naming it and the fix;
every odd-but-valid one is converted to the RGB the model expects."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lookalike.cli.main import cli
from lookalike.errors import BadImage, DatasetLoadError
from lookalike.images import open_image
from lookalike.source import load_source
from tests.conftest import make_image


@pytest.fixture
def messy_folder(tmp_path):
    """Three good images and one of each kind of bad file, in class folders."""
    root = tmp_path / "messy"
    (root / "good").mkdir(parents=True)
    (root / "bad").mkdir()
    for i in range(3):
        make_image((200, 40, 40), seed=i).save(root / "good" / f"{i}.jpg")
    whole = (root / "good" / "0.jpg").read_bytes()
    (root / "bad" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "bad" / "text.jpg").write_text("this is not an image")
    (root / "bad" / "empty.png").write_bytes(b"")
    Image.new("1", (10_000, 9_000)).save(root / "bad" / "bomb.png")  # 90 MP, tiny on disk
    os.symlink("loop-b.jpg", root / "bad" / "loop-a.jpg")
    os.symlink("loop-a.jpg", root / "bad" / "loop-b.jpg")
    os.symlink("..", root / "bad" / "up")  # a folder loop: must not be walked forever
    return root


EXPECTED = {
    "truncated.jpg": "cannot decode image",
    "text.jpg": "not a readable image",
    "empty.png": "empty file (0 bytes)",
    "bomb.png": "too many pixels (10000x9000 = 90,000,000 > 89,478,485)",
    "loop-a.jpg": "symlink loop",
    "loop-b.jpg": "symlink loop",
}


def test_each_bad_file_is_skipped_with_its_reason(messy_folder):
    source = load_source(str(messy_folder))
    results = list(source.batches(4))
    good = [r for batch, _ in results for r in batch]
    reasons = {os.path.basename(s.path): s.reason for _, bad in results for s in bad}
    assert len(good) == 3 and {r.label_name for r in good} == {"good"}
    assert set(reasons) == set(EXPECTED)
    for name, message in EXPECTED.items():
        assert message in reasons[name], reasons[name]
    paths = [s.path for _, bad in results for s in bad]
    assert all(os.path.lexists(messy_folder / p) for p in paths)  # each names its item


def test_ingest_goes_on_lists_skips_and_writes_the_log(messy_folder, tiny_vit, tmp_path):
    log = tmp_path / "skipped.jsonl"
    args = [
        "ingest",
        "--dataset",
        messy_folder,
        "--model",
        tiny_vit,
        "--skipped-log",
        log,
        "--qdrant-path",
        tmp_path / "store",
    ]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "3 added, 0 updated, 0 renamed, 0 removed, 0 unchanged, 6 skipped" in result.stdout
    # Listed in the summary, with the flag that lets it in (the library knows no flags)
    assert "skipped bad/bomb.png: too many pixels" in result.stdout
    assert "raise --max-pixels to allow it" in result.stdout
    assert "warning: skipped bad/" in result.stderr  # and reported as it happened
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert {os.path.basename(e["path"]) for e in logged} == set(EXPECTED)
    assert all({"split", "row", "path", "reason"} <= set(e) for e in logged)


def test_max_pixels_can_be_raised(messy_folder):
    bomb = messy_folder / "bad" / "bomb.png"
    assert open_image(str(bomb), max_pixels=100_000_000).size == (10_000, 9_000)
    with pytest.raises(BadImage, match="too many pixels"):
        open_image(str(make_png(messy_folder)), max_pixels=100)


def make_png(folder):
    path = folder / "small.png"
    make_image((1, 2, 3), seed=0, size=20).save(path)
    return path


def test_unreadable_file_names_the_fix(tmp_path, monkeypatch):
    path = make_png(tmp_path)
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the OS's refusal happen anyway
        real_open = os.open

        def refuse(fp, *args, **kwargs):
            if str(fp) == str(path):
                raise PermissionError(13, "Permission denied", str(fp))
            return real_open(fp, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(BadImage, match="permission denied; make it readable"):
        open_image(str(path))


@pytest.mark.parametrize(
    "image, expected",
    [
        (Image.new("RGBA", (4, 4), (255, 0, 0, 0)), (255, 255, 255)),  # transparent: white
        (Image.new("RGBA", (4, 4), (255, 0, 0, 255)), (255, 0, 0)),
        (Image.new("LA", (4, 4), (0, 255)), (0, 0, 0)),
        (Image.new("L", (4, 4), 128), (128, 128, 128)),
        (Image.new("CMYK", (4, 4), (0, 255, 255, 0)), (255, 0, 0)),
        (Image.new("RGB", (4, 4), (10, 200, 30)).quantize(4), (10, 200, 30)),
    ],
    ids=["rgba-transparent", "rgba-opaque", "la", "grey", "cmyk", "palette"],
)
def test_modes_convert_to_rgb(image, expected):
    rgb = open_image(image)
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == expected


def test_16_bit_greyscale_keeps_its_range(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    rgb = np.asarray(open_image(str(path)))
    assert rgb.shape == (64, 64, 3)
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255  # not clipped to white


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 10))  # red in the top-left corner as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)
    shown = open_image(str(path))
    assert shown.size == (20, 40)
    r, g, b = shown.getpixel((15, 3))  # the red corner is now top-right
    assert r > 200 and b < 60


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetLoadError, match="is empty: no images or data files"):
        load_source(str(tmp_path / "nothing"))


def test_split_folders_become_splits(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split / "red").mkdir(parents=True)
        make_image((200, 0, 0), seed=1).save(tmp_path / split / "red" / "a.jpg")
    assert len(load_source(str(tmp_path), "test")) == 1
    with pytest.raises(DatasetLoadError, match="its splits are: test, train"):
        load_source(str(tmp_path), "validation")


def test_split_folders_share_one_label_list(tmp_path):
    for split, names in {"train": ["cat", "dog"], "test": ["dog"]}.items():
        for name in names:
            (tmp_path / split / name).mkdir(parents=True)
            make_image((9, 9, 9), seed=1).save(tmp_path / split / name / "a.jpg")
    test = load_source(str(tmp_path), "test")
    assert test.label_names == ("cat", "dog")
    assert test.load([0])[0][0].label_name == "dog"


def run_cli(*args, timeout: float = 180) -> subprocess.CompletedProcess:
    """The command in its own process: a hang fails the test instead of stopping the suite."""
    return subprocess.run(
        [sys.executable, "-m", "lookalike.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")
def test_pipes_sockets_and_devices_are_skipped_without_blocking(tmp_path, tiny_vit):
    """A named pipe called q.jpg used to hang search forever and ingest at 0/N; /dev/zero
    behind an image name would be read without end."""
    root = tmp_path / "odd"
    (root / "good").mkdir(parents=True)
    for i in range(3):
        make_image((40, 180, 60), seed=i).save(root / "good" / f"{i}.jpg")
    os.mkfifo(root / "good" / "q.jpg")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("odd/good/s.jpg")  # relative: socket paths are short; tests run in tmp_path
    os.symlink("/dev/zero", root / "good" / "zero.jpg")
    store = tmp_path / "store"

    ingest = run_cli("ingest", "--dataset", root, "--model", tiny_vit, "--qdrant-path", store)
    assert ingest.returncode == 0, ingest.stderr
    assert "3 added, 0 updated, 0 renamed, 0 removed, 0 unchanged, 2 skipped" in ingest.stdout
    for name, what in (("q.jpg", "a named pipe"), ("s.jpg", "a socket")):
        line = next(ln for ln in ingest.stderr.splitlines() if name in ln and "skipped" in ln)
        assert what in line and "only regular files are read" in line, line
    # /dev/zero is outside the folder: the link is not followed at all, and named
    assert "lead out of the folder, not followed: 1 (good/zero.jpg)" in ingest.stderr

    search = run_cli("search", root / "good" / "q.jpg", "--qdrant-path", store, timeout=120)
    assert search.returncode == 1 and "Traceback" not in search.stderr
    assert "a named pipe (FIFO), not an image file" in search.stderr, search.stderr
