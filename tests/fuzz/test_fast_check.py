"""The compiled check (``shared.core.events.fast_check``) never accepts what the catalogue's
marshmallow schemas reject, for every schema of the catalogue: on arbitrary data, on valid data
and on valid data with one field replaced by anything. And it does accept every valid event —
otherwise the append, the consumer and the rebuild would quietly fall back to the slow path."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from shared.core.events import fast_check
from shared.core.events.catalogue import CATALOGUE, schema_for
from tests.fuzz.strategies import PURE, json_values
from tests.fuzz.test_event_schemas import SCHEMAS, VALID_DATA_BY_VERSION, field_names

# 60 examples a schema and test: with 30-odd schemas, the tier's 2,000-odd cases cost ~15 s.
PER_SCHEMA = PURE.__class__(PURE, max_examples=60)


def marshmallow_accepts(event_type, version, data) -> bool:
    return isinstance(data, dict) and not schema_for(event_type, version).validate(data)


@pytest.mark.parametrize("event_type, version", SCHEMAS)
def test_the_compiled_check_accepts_only_what_the_schema_accepts(tried, event_type, version):
    names = field_names(event_type, version)
    valid = VALID_DATA_BY_VERSION[(event_type, version)]
    mutated = st.tuples(valid, st.sampled_from(names), json_values).map(
        lambda triple: {**triple[0], triple[1]: triple[2]})
    dropped = st.tuples(valid, st.sampled_from(names)).map(
        lambda pair: {key: value for key, value in pair[0].items() if key != pair[1]})
    data = st.one_of(json_values, mutated, dropped,
                     st.dictionaries(st.sampled_from(names) | st.text(max_size=8), json_values,
                                     max_size=len(names) + 2))

    @PER_SCHEMA
    @given(data=data)
    def run(data):
        tried[f"compiled check {event_type} v{version}: arbitrary and mutated data"] += 1
        if fast_check.data_accepted(event_type, version, data):
            assert marshmallow_accepts(event_type, version, data), data

    run()


@pytest.mark.parametrize("event_type, version", SCHEMAS)
def test_the_compiled_check_accepts_every_valid_event(tried, event_type, version):
    @PER_SCHEMA
    @given(data=VALID_DATA_BY_VERSION[(event_type, version)])
    def run(data):
        tried[f"compiled check {event_type} v{version}: valid data"] += 1
        assert marshmallow_accepts(event_type, version, data)
        assert fast_check.data_accepted(event_type, version, data), data

    run()


def test_an_unknown_type_or_version_is_left_to_the_catalogue():
    some_type, version = next(iter(CATALOGUE))
    assert not fast_check.data_accepted("NoSuchEvent", 1, {})
    assert not fast_check.data_accepted(some_type, 99, {})
