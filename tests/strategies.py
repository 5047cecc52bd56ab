"""Hypothesis strategies for hostile input: any JSON, absurd numbers, text JSON can carry.

Shared by the fuzz properties of the parsers and of the consumers' handle steps.
"""

from __future__ import annotations

import json
import math

from hypothesis import strategies as st

from common.messages import EARLIEST_READING_MS, MAX_READING_FUTURE_MS

NOW_MS = 1_732_611_600_000
DEVICE = "0b6d5c7e-8a4f-4c1e-9d5b-2f6a7e8b9c01"

HOSTILE_NUMBERS = [10**400, -(10**400), 2**63, 2**63 - 1, 2**31, 2**31 - 1, -1, 0, 1, 1e308, -1e308,
                   5e-324, -0.0, 0.1, 99.99, 100.0, 100.0000001, math.nan, math.inf, -math.inf,
                   EARLIEST_READING_MS, NOW_MS + MAX_READING_FUTURE_MS, float(NOW_MS), NOW_MS + 0.5]
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN and infinities included: json.dumps writes them as NaN/Infinity
    st.sampled_from(HOSTILE_NUMBERS),
)
# Text as JSON can carry it: lone surrogates, control and line-separator characters included.
characters = st.one_of(st.characters(), st.characters(categories=["Cs"]),
                       st.sampled_from("\x00\n\r\t\u2028\u202e\ufeff\\\"{}[]é€😀"))
texts = st.one_of(st.text(characters, max_size=24), st.sampled_from([
    "", " ", DEVICE, DEVICE.upper(), DEVICE.replace("-", ""), "{" + DEVICE + "}", "urn:uuid:" + DEVICE,
    "٠" * 32, "0" * 31 + "_0", "2026-11-26T17:00:00+00:00", "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+01:00", "2026-11-26T17:00:00Z", "admin", "client", "²", "٣", "7", "1" * 30,
]))
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=12,
)
# What replaces one field: every JSON type, kept shallow (depth is json_values' business).
field_values = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(texts, scalars, max_size=2))


def nested(depth: int, leaf=1):
    """Return `leaf` inside `depth` alternating objects and lists, an object outermost."""
    value = leaf
    for level in range(depth, 0, -1):
        value = {"a": value} if level % 2 else [value]
    return value


def json_bytes(value) -> bytes:
    """Encode as Python's json module does by default: surrogates as \\ud800, NaN and Infinity bare."""
    return json.dumps(value).encode()


def with_fields(base: dict, field_values: st.SearchStrategy) -> st.SearchStrategy:
    """Return objects like `base` with fields replaced by anything, dropped, or extra ones added."""
    missing = object()
    replaced = st.fixed_dictionaries({name: st.one_of(st.just(value), st.just(missing), field_values)
                                      for name, value in base.items()})
    return st.builds(lambda fields, extra: {**{k: v for k, v in fields.items() if v is not missing}, **extra},
                     replaced, st.just({}) | st.dictionaries(texts, field_values, max_size=2))


def with_inner_fields(base: dict, key: str, field_values: st.SearchStrategy) -> st.SearchStrategy:
    """Return objects like `base` whose inner object `base[key]` has fields replaced, dropped or added."""
    return st.builds(lambda inner: {**base, key: inner}, with_fields(base[key], field_values))
