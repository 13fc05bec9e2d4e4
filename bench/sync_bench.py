"""How long `lookalike ingest` takes on a folder that has not changed (and on one that has),
once the collection is built: the sync a user runs every day, or `watch` runs at each change.

    python bench/sync_bench.py --beans ../shared/data/beans --files 10000 [--engine edge]

Makes N small distinct JPEGs (96x96, re-encoded from Beans leaves at several sizes and
qualities) in class folders, builds the collection once with a tiny random ViT (the sync
times below never run a model, so its choice does not matter to them), then times:

- unchanged: the command again, whole process (start-up, imports, folder walk, store read);
- unchanged, in process: `ingest()` alone, as `watch` runs it at each change;
- dry run: the plan of a changed folder (10 new, 10 deleted, 10 renamed), printed;
- touched: every file's mtime changed, bytes not (each file is read and hashed once).

Prints one JSON object; docs/benchmarks.md records a run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pyarrow.parquet as pq  # noqa: E402
from PIL import Image  # noqa: E402

from lookalike import StoreConfig, connect  # noqa: E402
from lookalike.embed import ModelSettings  # noqa: E402
from lookalike.ingest import ingest  # noqa: E402
from lookalike.source import load_source  # noqa: E402

LABELS = ("angular_leaf_spot", "bean_rust", "healthy")


def make_files(beans: str, folder: Path, n: int) -> None:
    """n distinct small JPEGs: each Beans leaf at a few sizes and qualities."""
    table = pq.read_table(Path(beans) / "data" / "train-00000-of-00001.parquet")
    rows = table.to_pylist()
    made = 0
    for variant in range(n // len(rows) + 1):
        size, quality = 96 - variant % 4, 70 + variant % 25
        for row in rows:
            if made == n:
                return
            image = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")
            image = image.resize((size, size))
            target = (
                folder
                / LABELS[row["labels"]]
                / f"{variant:02d}-{Path(row['image_file_path']).stem}.jpg"
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            image.save(target, quality=quality)
            made += 1


def tiny_vit(folder: Path) -> str:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


def command(folder: Path, model: str, store: Path, engine: str, *extra: str) -> tuple[float, dict]:
    args = [sys.executable, "-m", "lookalike.cli", "ingest", "--dataset", str(folder)]
    args += ["--model", model, "--qdrant-path", str(store), "--collection", "bench"]
    args += ["--embedded-engine", engine, "--json", *extra]
    started = time.perf_counter()
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - started, json.loads(out)


def in_process(folder: Path, store: Path, engine: str) -> tuple[float, dict]:
    started = time.perf_counter()
    with connect(StoreConfig(path=str(store), engine=engine)) as s:
        report = ingest(load_source(str(folder)), ModelSettings(), s, "bench")
    return time.perf_counter() - started, report.to_dict()


def change(folder: Path) -> None:
    files = sorted(folder.rglob("*.jpg"))
    for f in files[:10]:
        f.unlink()
    for f in files[10:20]:
        f.rename(f.with_name("renamed-" + f.name))
    for f in files[20:30]:
        shutil.copy(f, f.with_name("00-new-" + f.name))
        with open(f.with_name("00-new-" + f.name), "ab") as out:
            out.write(b"\0")  # distinct bytes, same picture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beans", default="../shared/data/beans")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--engine", default="edge", choices=["edge", "local"])
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sync-bench-"))
    folder, store = work / "photos", work / f"store-{args.engine}"
    started = time.perf_counter()
    if not folder.exists():
        make_files(args.beans, folder, args.files)
    made = time.perf_counter() - started
    model = str(work / "tiny-vit") if (work / "tiny-vit").exists() else tiny_vit(work / "tiny-vit")
    shutil.rmtree(store, ignore_errors=True)
    build, built = command(folder, model, store, args.engine)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "files": args.files,
        "engine": args.engine,
        "make_files_s": round(made, 1),
        "build_s": round(build, 1),
        "built": {k: built[k] for k in ("added", "embedded")},
    }
    wall, report = command(folder, model, store, args.engine)
    assert report["unchanged"] == args.files and report["embedded"] == 0, report
    result["unchanged_command_s"] = round(wall, 2)
    seconds, report = in_process(folder, store, args.engine)
    result["unchanged_in_process_s"] = round(seconds, 2)
    change(folder)
    wall, report = command(folder, model, store, args.engine, "--dry-run")
    counts = ("added", "updated", "renamed", "removed", "unchanged")
    result["dry_run_command_s"] = round(wall, 2)
    result["dry_run"] = {k: report[k] for k in counts}
    wall, report = command(folder, model, store, args.engine)
    result["changed_command_s"] = round(wall, 2)
    result["changed"] = {k: report[k] for k in (*counts, "embedded")}
    for f in folder.rglob("*.jpg"):
        os.utime(f)
    wall, report = command(folder, model, store, args.engine)
    assert report["embedded"] == 0 and report["unchanged"] == args.files, report
    result["touched_command_s"] = round(wall, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
