"""Numeric settings (``shared.core.config.number``): the value in its kind, or a start-up error
that names the variable, its value and the range it needs."""
from __future__ import annotations

import pytest

from shared.core import config


@pytest.mark.parametrize("name, raw, rule, error", [
    ("NOTIFICATION_FOLLOW_UP_DAYS", "0", {"above": 0}, "must be above 0, not '0'"),
    ("ROUTING_REOPEN_DAYS", "-1", {"at_least": 0}, "must be at least 0, not '-1'"),
    ("ROUTING_CLUSTER_SIMILARITY", "1.5", {"at_least": 0.0, "at_most": 1.0}, "at least 0.0 and at most 1.0"),
    ("INTAKE_MEDIA_MAX_BYTES", "ten", {"kind": int, "above": 0}, "must be a number, not 'ten'"),
    ("INTAKE_MEDIA_MAX_BYTES", "2.5", {"kind": int, "above": 0}, "must be a number, not '2.5'"),
])
def test_a_number_out_of_its_range_stops_the_start_with_its_name(monkeypatch, name, raw, rule, error):
    monkeypatch.setenv(name, raw)
    with pytest.raises(config.ConfigError, match=name) as refused:
        config.number(name, "1", **rule)
    assert error in str(refused.value)


def test_a_number_in_range_or_unset_comes_in_its_kind(monkeypatch):
    monkeypatch.delenv("ROUTING_REOPEN_DAYS", raising=False)
    assert config.number("ROUTING_REOPEN_DAYS", "14", at_least=0) == 14.0
    monkeypatch.setenv("INTAKE_MEDIA_MAX_BYTES", "1024")
    value = config.number("INTAKE_MEDIA_MAX_BYTES", "1", kind=int, above=0)
    assert value == 1024 and type(value) is int
