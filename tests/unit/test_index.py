"""Index and search settings: validation and the quantized defaults."""

import pytest

from lookalike.errors import BadQuery
from lookalike.index import EXACT, IndexSettings, SearchSettings, effective
from lookalike.store.config import StoreConfig, check_name


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"quantization": "pq"}, "quantization"),
        ({"hnsw_m": 0}, "hnsw_m"),
        ({"shards": 0}, "shards"),
    ],
)
def test_bad_index_settings_name_their_field(kwargs, field):
    with pytest.raises(BadQuery) as err:
        IndexSettings(**kwargs)
    assert err.value.field == field


def test_index_settings_round_trip_and_ignore_unknown_keys():
    index = IndexSettings(hnsw_m=8, quantization="int8")
    assert IndexSettings.from_dict({**index.to_dict(), "future": 1}) == index


@pytest.mark.parametrize(
    "quantization, params, oversampling",
    [
        ("none", None, None),
        ("int8", None, 2.0),
        ("binary", None, 8.0),
        ("int8", SearchSettings(oversampling=3.0), 3.0),
        ("int8", EXACT, None),
    ],
)
def test_quantized_collections_get_their_measured_oversampling(quantization, params, oversampling):
    assert effective(params, IndexSettings(quantization=quantization)).oversampling == oversampling


def test_store_config_hides_credentials_and_sizes_requests():
    config = StoreConfig(url="https://admin:pw@qdrant.example:6333", api_key="secret")
    assert config.location == "https://qdrant.example:6333"
    assert "secret" not in repr(config) and "pw" not in config.location
    assert StoreConfig(url="http://h", api_key="k").insecure_key
    assert StoreConfig().points_per_request(768) == 256
    assert StoreConfig(request_limit_mb=1).points_per_request(768) == 32


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "a/b", "../up", "a b"])
def test_unsafe_collection_names_are_refused(name):
    with pytest.raises(BadQuery) as err:
        check_name(name)
    assert err.value.field == "collection"
