"""Field names in Qdrant's key syntax: spreadsheet headers quoted for filters and --group-by,
names it cannot carry (a double quote, a backslash: it has no escapes) refused in words."""

import pytest

from lookalike.errors import BadQuery
from lookalike.query import group_key, payload_key, unnameable, unnameable_message


@pytest.mark.parametrize(
    "name, key",
    [
        ("sku", "sku"),
        ("shop.id", "shop.id"),  # a path into an object
        ("Product Name", '"Product Name"'),
        ("size (cm)", '"size (cm)"'),
        ("time:zone", '"time:zone"'),
        ("w/h", '"w/h"'),
        ("tab\there", '"tab\there"'),
        ("Größe", '"Größe"'),
    ],
)
def test_group_keys_quote_what_the_key_syntax_would_misread(name, key):
    assert group_key(name) == key
    assert payload_key(name, {name.split(".")[0]: "keyword"}) == key


@pytest.mark.parametrize("name, what", [('say "hi"', "a double quote"), ("a\\b", "a backslash")])
def test_names_the_key_syntax_cannot_carry_are_refused_in_words(name, what):
    assert unnameable(name) == what
    for key in (lambda: group_key(name), lambda: payload_key(name, {name: "keyword"})):
        with pytest.raises(BadQuery, match=f"has {what} in its name") as e:
            key()
        assert "rename it in your metadata" in str(e.value)
    said = unnameable_message(name, "metadata.csv line 1")
    assert "(metadata.csv line 1)" in said and "rename it there" in said
