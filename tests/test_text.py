"""Text queries with tiny random CLIP and SigLIP models and their own kinds of tokenizer: the
plumbing (sizes, unit length, the model's own text features, padding and truncation, the
collection's record, refusals), not the quality, which needs real weights."""

import json
import shutil
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
import transformers as tf

from lookalike.cli.web import create_app
from lookalike.embed.embedder import Embedder
from lookalike.embed.text import TextEncoder
from lookalike.errors import BadQuery, ModelLoadError, NoTextTower, TextTruncated
from lookalike.ingest import ingest
from lookalike.records import CollectionMeta
from lookalike.search import Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from tests.conftest import make_image
from tests.live import serving

TEXTS = ["a bee on a yellow flower", "rusty leaf", "red"]


@pytest.fixture(scope="module", params=["clip", "siglip"])
def dual(request, tiny_clip, tiny_siglip):
    folder = tiny_clip if request.param == "clip" else tiny_siglip
    emb = Embedder(folder, device="cpu", precision="fp32")
    return request.param, folder, emb, TextEncoder(emb)


def reference(folder: str, texts: list[str], **tokenizer_kwargs) -> np.ndarray:
    """The model's own get_text_features on an untouched copy, normalised."""
    model = tf.AutoModel.from_pretrained(folder).eval()
    tokens = tf.AutoTokenizer.from_pretrained(folder)(
        texts, return_tensors="pt", **tokenizer_kwargs
    )
    with torch.no_grad():
        features = model.get_text_features(**tokens).pooler_output
    return torch.nn.functional.normalize(features, dim=-1).numpy()


def test_text_and_image_vectors_share_the_collection_size_and_unit_length(dual):
    name, _, emb, text = dual
    images = emb.embed([make_image((200, 40, 40), seed=1), make_image((40, 40, 200), seed=2)])
    words = text.embed(TEXTS)
    assert emb.text_tower and emb.pooling == "image_features"
    assert images.shape == (2, emb.dim) and words.shape == (3, emb.dim)
    assert words.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(words, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(words[0], words[1])  # texts are told apart
    assert text.limit == {"clip": 77, "siglip": 64}[name]


def test_text_vector_is_the_models_own_text_features(dual):
    name, folder, _, text = dual
    # CLIP pads a batch to its longest text; SigLIP was trained on texts padded to max_length.
    padding = {"clip": dict(padding=True), "siglip": dict(padding="max_length", max_length=64)}
    expected = reference(folder, TEXTS, **padding[name])
    np.testing.assert_allclose(text.embed(TEXTS), expected, atol=1e-5)
    # One at a time or in a batch: the same vector.
    np.testing.assert_allclose(text.embed(TEXTS[1:2])[0], expected[1], atol=1e-5)


def test_siglip_needs_its_max_length_padding(tiny_siglip):
    """SigLIP pools its last position: padded only to the longest text, a query would get
    another vector than the one the model was trained to give."""
    text = TextEncoder(Embedder(tiny_siglip, device="cpu", precision="fp32"))
    short = reference(tiny_siglip, ["rusty leaf"], padding=True)
    assert not np.allclose(text.embed(["rusty leaf"]), short, atol=1e-3)


def test_long_clip_text_is_cut_at_77_tokens_and_said_so(dual):
    name, folder, _, text = dual
    long = " ".join(["rusty leaf"] * 40)
    prompt, short = text.prompts([long, "red"])
    assert prompt.truncated and prompt.tokens > prompt.limit == text.limit
    assert not short.truncated
    expected = reference(folder, [long], truncation=True, max_length=text.limit, padding=True)
    if name == "siglip":
        expected = reference(folder, [long], truncation=True, max_length=64, padding="max_length")
    np.testing.assert_allclose(text.embed([long]), expected, atol=1e-5)


@pytest.fixture(scope="module")
def clip_collection(tmp_path_factory, tiny_clip, image_folder):
    store = connect(StoreConfig(path=str(tmp_path_factory.mktemp("text") / "store")))
    emb = Embedder(tiny_clip, device="cpu", precision="fp32")
    ingest(load_source(str(image_folder), "train"), emb, store, "colours")
    yield store, emb
    store.close()


def test_clip_collection_records_text_queries_and_answers_them(clip_collection):
    store, emb = clip_collection
    assert store.info("colours").meta.text is True
    searcher = Searcher("colours", store=store, embedder=emb)
    hits = searcher.search_text("a red flower", k=4)
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    # Each score is the cosine of the text's vector and the hit's own image vector.
    words = TextEncoder(emb).embed(["a red flower"])[0]
    for hit in hits:
        image = emb.embed([searcher.candidate_image(hit)])[0]
        assert hit.score == pytest.approx(float(words @ image), abs=1e-4)
    assert hits == sorted(hits, key=lambda h: -h.score)
    green = searcher.search_text("a red flower", k=3, label="green")
    assert {h.label_name for h in green} == {"green"}
    assert len(searcher.search_texts(["red", "blue"], k=2)) == 2


def test_a_text_query_past_the_limit_warns(clip_collection):
    store, emb = clip_collection
    searcher = Searcher("colours", store=store, embedder=emb)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        searcher.search_texts(["red", " ".join(["blue"] * 40)], k=2)
    [warning] = [w.message for w in caught if isinstance(w.message, TextTruncated)]
    assert (warning.tokens, warning.limit) == (162, 77)  # 4 letters a word, and the two ends
    assert "reads 77" in str(warning) and "left out" in str(warning)


def test_an_empty_text_query_is_refused(clip_collection):
    store, emb = clip_collection
    with pytest.raises(BadQuery, match="needs words") as info:
        Searcher("colours", store=store, embedder=emb).search_text("  ")
    assert info.value.field == "text"


def test_collection_from_before_text_queries_asks_its_model(clip_collection):
    """Metadata written before the `text` record reads as before; whether such a collection
    takes text is the loaded model's answer."""
    store, emb = clip_collection
    recorded = store.info("colours").meta.to_dict()
    del recorded["text"]
    old = CollectionMeta.from_dict(json.loads(json.dumps(recorded)))
    assert old.text is None and old == replace(store.info("colours").meta, text=None)
    searcher = Searcher("colours", store=store, embedder=emb)
    searcher.meta = old
    assert searcher.text_queries
    assert len(searcher.search_text("red", k=3)) == 3


def test_image_only_collection_refuses_text(tmp_path, tiny_vit, image_folder):
    store = connect(StoreConfig(path=str(tmp_path / "store")))
    emb = Embedder(tiny_vit, device="cpu", precision="fp32")
    ingest(load_source(str(image_folder), "train"), emb, store, "vit")
    assert store.info("vit").meta.text is False
    searcher = Searcher("vit", store=store, embedder=emb)
    with pytest.raises(NoTextTower) as info:
        searcher.search_text("a red flower")
    error = info.value
    assert (error.collection, error.model, error.field) == ("vit", emb.model_id, "text")
    assert "CLIP or SigLIP" in str(error) and "openai/clip-vit-base-patch32" in str(error)
    assert len(searcher.search(make_image((200, 40, 40), seed=3), k=2)) == 2  # images still do
    client = api(searcher)  # and over HTTP, a 400 with the same sentence
    assert client.get("/health").json()["text"] is False
    response = client.post("/search", data={"text": "a red flower"})
    assert response.status_code == 400 and response.json()["detail"] == str(error)
    store.close()


def test_a_model_folder_without_its_tokenizer_says_so(tmp_path, tiny_clip):
    folder = tmp_path / "clip-no-tokenizer"
    shutil.copytree(tiny_clip, folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (folder / name).unlink(missing_ok=True)
    emb = Embedder(str(folder), device="cpu", precision="fp32")
    with pytest.raises(ModelLoadError, match="tokenizer") as info:
        TextEncoder(emb)
    assert info.value.kind == "tokenizer"


def run(*args):
    from click.testing import CliRunner

    from lookalike.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def clip_cli(tmp_path_factory, tiny_clip, image_folder):
    """A CLIP collection built by the command line; returns its store options."""
    store = ["--qdrant-path", tmp_path_factory.mktemp("text-cli") / "store"]
    store += ["--collection", "colours-clip"]
    result = run("ingest", "--dataset", image_folder, "--model", tiny_clip, *store)
    assert result.exit_code == 0, result.output
    return store


def test_search_mixes_image_and_text_queries(clip_cli, image_folder):
    image = image_folder / "red" / "red_1.jpg"
    result = run("search", "--text", "a red flower", image, "--k", 3, "--json", *clip_cli)
    assert result.exit_code == 0, result.output
    first, second = [json.loads(line) for line in result.stdout.splitlines()]
    assert first["query"] == str(image) and "kind" not in first  # image lines as before
    assert (second["query"], second["kind"]) == ("a red flower", "text")
    assert [h["rank"] for h in second["hits"]] == [1, 2, 3]
    assert json.loads(run("info", "--json", *clip_cli).stdout)["text"] is True
    assert "text queries       yes" in run("info", *clip_cli).stdout


def test_search_text_table_label_and_grid(clip_cli, tmp_path):
    grid = tmp_path / "words.png"
    args = ["--text", "red", "--text", "blue", "--label", "green", "--grid", grid]
    result = run("search", *args, "--k", 2, *clip_cli)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith("text: ")] == ["text: red", "text: blue"]
    assert sum(" green " in ln for ln in lines) == 4
    from PIL import Image

    from lookalike.cli.grid import CAPTION, GAP, TILE

    with Image.open(grid) as picture:  # two rows: the words, then two hits
        assert picture.size == (GAP + 3 * (TILE + GAP), GAP + 2 * (TILE + CAPTION + GAP))


def test_search_text_takes_filters_and_csv(clip_cli):
    """The options of image queries hold for words: --where, --group-by, --min-score, --csv."""
    every = json.loads(run("search", "--text", "red", "--k", 12, "--json", *clip_cli).stdout)
    scores = [h["score"] for h in every["hits"]]
    floor = (scores[3] + scores[4]) / 2  # four above it
    options = ["--where", "label_name=red,blue", "--group-by", "label_name"]
    grouped = run("search", "--text", "red", *options, "--k", 3, "--json", *clip_cli)
    assert grouped.exit_code == 0, grouped.output
    names = [h["label_name"] for h in json.loads(grouped.stdout)["hits"]]
    assert sorted(names) == ["blue", "red"]  # one per label, and no green
    cut = run("search", "--text", "red", "--min-score", floor, "--k", 12, "--csv", *clip_cli)
    assert cut.exit_code == 0, cut.output
    rows = cut.stdout.splitlines()
    assert len(rows) == 1 + 4 and rows[1].startswith("red,")  # a header, then four hits


def test_search_text_past_the_limit_says_so_on_stderr(clip_cli):
    result = run("search", "--text", " ".join(["blue"] * 40), "--k", 1, *clip_cli)
    assert result.exit_code == 0, result.output
    assert "warning: text query 'blue blue" in result.stderr
    assert "is 162 tokens long and the model reads 77" in result.stderr


def test_search_needs_a_query_or_text(clip_cli):
    result = run("search", *clip_cli)
    assert result.exit_code == 2 and "--text WORDS" in result.stderr
    empty = run("search", "--text", "  ", *clip_cli)
    assert empty.exit_code == 1 and "a text query needs words" in empty.stderr


def test_image_only_collection_answers_text_with_one_line(tmp_path, image_folder, tiny_vit):
    store = ["--qdrant-path", tmp_path / "store", "--collection", "vit"]
    assert run("ingest", "--dataset", image_folder, "--model", tiny_vit, *store).exit_code == 0
    result = run("search", "--text", "a red flower", *store)
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "embeds images only" in line and "CLIP or SigLIP" in line
    assert (
        f"`lookalike ingest --dataset {image_folder} --model openai/clip-vit-base-patch32" in line
    )
    assert result.stdout == ""


def test_eval_text_queries(clip_cli, tmp_path):
    queries = tmp_path / "queries.tsv"
    queries.write_text(
        "# words<TAB>label\n"
        "a red flower\tred\n"
        "green leaves\tgreen\n"
        '{"text": "the blue sky", "label": "blue"}\n'
        "\n"
    )
    result = run("eval", "--text-queries", queries, "--k", 3, "--json", *clip_cli)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["queries"] == 3 and report["k"] == 3
    assert set(report["per_class_precision_at_k"]) == {"red", "green", "blue"}
    assert 0 <= report["precision_at_k"] <= 1
    table = run("eval", "--text-queries", queries, *clip_cli)
    assert table.exit_code == 0 and "precision@5" in table.stdout


@pytest.mark.parametrize(
    "content, message",
    [
        ("a red flower\tred\nno tab here\n", "line 2: expected the words, a tab, and the label"),
        ("a red flower\tpurple\n", "line 1: unknown label 'purple'; labels are: blue, green"),
        ("# nothing\n\n", "holds no text queries"),
        ('{"text": "red"}\n', "line 1: a JSON line needs text and label"),
    ],
)
def test_eval_text_queries_file_errors(clip_cli, tmp_path, content, message):
    queries = tmp_path / "queries.tsv"
    queries.write_text(content)
    result = run("eval", "--text-queries", queries, *clip_cli)
    assert result.exit_code == 1 and message in result.stderr


def api(searcher):
    from fastapi.testclient import TestClient

    from lookalike.cli.web import create_app

    return TestClient(create_app(searcher), base_url="http://localhost")


def test_http_search_takes_text(clip_collection):
    store, emb = clip_collection
    searcher = Searcher("colours", store=store, embedder=emb)
    client = api(searcher)
    assert client.get("/health").json()["text"] is True
    response = client.post("/search", data={"text": "a red flower", "k": "3", "label": "red"})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = searcher.search_text("a red flower", k=3, label="red")
    assert [h["id"] for h in body["hits"]] == [h.id for h in expected]
    assert body["hits"][0]["score"] == pytest.approx(expected[0].score, abs=1e-5)
    assert body["note"] is None
    long = client.post("/search", data={"text": " ".join(["blue"] * 40)}).json()
    assert len(long["hits"]) == 5 and "162 tokens long and the model reads 77" in long["note"]


@pytest.mark.parametrize(
    "form, files, status, detail",
    [
        ({}, None, 400, "send one query: an image, a point, SPLIT:ROW or a text"),
        ({"text": "red"}, {"image": ("q.png", b"x", "image/png")}, 400, "send one query"),
        ({"text": " "}, None, 400, "a text query needs words"),
        ({"text": "red", "label": "purple"}, None, 400, "unknown label 'purple'"),
        ({"text": "x" * 1001}, None, 422, None),
    ],
)
def test_http_text_refusals(clip_collection, form, files, status, detail):
    store, emb = clip_collection
    response = api(Searcher("colours", store=store, embedder=emb)).post(
        "/search", data=form, files=files
    )
    assert response.status_code == status, response.text
    assert detail is None or detail in response.json()["detail"]


def test_a_search_sent_to_a_running_serve_takes_text(clip_collection):
    """What `search --text` does when a serve holds the store: the same hits, the same note."""
    from lookalike.search.remote import RemoteSearcher

    store, emb = clip_collection
    searcher = Searcher("colours", store=store, embedder=emb)
    with serving(create_app(searcher)) as url:
        remote = RemoteSearcher(url)
        result = remote.search_words("a red flower", 3, "red")
        assert (result.query.text, result.query.kind) == ("a red flower", "text")
        expected = searcher.search_text("a red flower", k=3, label="red")
        assert [h.id for h in result.hits] == [h.id for h in expected]
        with pytest.warns(UserWarning, match="162 tokens long"):
            remote.search_words(" ".join(["blue"] * 40), 1)


def test_text_queries_take_the_query_options(clip_collection):
    """A text query is filtered like an image query: in the library, over HTTP and through a
    running serve, the same hits."""
    from lookalike.search.remote import RemoteSearcher

    store, emb = clip_collection
    searcher = Searcher("colours", store=store, embedder=emb)
    every = searcher.search_text("a red flower", k=12)
    floor = (every[4].score + every[5].score) / 2  # five hits stay above it
    kept = searcher.search_text("a red flower", k=12, options=searcher.options(min_score=floor))
    assert [h.id for h in kept] == [h.id for h in every[:5]]
    client = api(searcher)
    body = client.post("/search", data={"text": "a red flower", "k": 12, "min_score": floor})
    assert [h["id"] for h in body.json()["hits"]] == [h.id for h in kept]
    refused = client.post("/search", data={"text": "red", "where": "sku=R-1"})
    assert refused.status_code == 400 and "sku" in refused.json()["detail"]
    with serving(create_app(searcher)) as url:
        remote = RemoteSearcher(url).search_words("a red flower", 12, query={"min_score": floor})
    assert [h.id for h in remote.hits] == [h.id for h in kept]
