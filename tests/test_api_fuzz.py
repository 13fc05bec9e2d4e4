"""schemathesis fuzzes every operation of the OpenAPI schema: no input may cause a 5xx."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from lookalike.cli.web import create_app
from lookalike.embed.embedder import Embedder
from lookalike.ingest import ingest
from lookalike.search import Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect


@pytest.fixture(scope="module")
def app(tmp_path_factory, image_folder, tiny_vit):
    store = connect(StoreConfig(path=str(tmp_path_factory.mktemp("fuzz") / "store")))
    emb = Embedder(tiny_vit, device="cpu", precision="fp32")
    ingest(load_source(str(image_folder)), emb, store, "colours")
    searcher = Searcher("colours", store=store, embedder=emb)
    # schemathesis calls the app as http://testserver/, a name like any other: allow it.
    yield create_app(searcher, max_upload=100_000, allowed_hosts=("testserver",))
    store.close()


def test_no_input_causes_a_server_error(app):
    # Operations are driven by hand: schemathesis' pytest plugin lags pytest 9.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {"/health", "/search", "/recommend", "/points/{point_id}/image"}
    paths |= {"/points", "/points/{point_id}/thumbnail", "/collection", "/collection/tracked"}
    assert {op.path for op in operations} == paths | {"/rows/{split}/{row}/image"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case):
            case.call_and_validate(checks=[not_a_server_error])

        fuzz()
