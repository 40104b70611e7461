"""A quick first look at an event, with the catalogue's own check as the judge.

``validate_envelope`` / ``validate_data`` (marshmallow) cost 60-200 µs an event — most of an
append's, a consumer's and a rebuild's time — and nearly every event they see is valid.
``accepts(raw, source)`` answers *True only when the catalogue would accept the envelope*, and
``data_accepted(event_type, version, data)`` the same for an event's ``data``. Both are compiled
from the very schemas of the catalogue (fields, ``required``, ``allow_none``, ``unknown``, the
validators, ``@validates_schema`` hooks) and check the plain JSON shapes events take. Whatever
they do not know for certain (an unusual field type, a value of an unexpected Python type, a
validator they cannot run) makes them answer False — and the caller then runs the catalogue's
check, whose verdict is final. So the outcome is exactly the catalogue's;
only the time differs. ``tests/unit/test_reporting_bulk_rebuild.py`` and
``tests/fuzz/test_fast_check.py`` pin this (every valid event accepted; nothing the catalogue
rejects accepted, for generated and mutated data of every schema).
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

from marshmallow import INCLUDE, RAISE, Schema, fields, validate

from shared.core.events.catalogue import (_ENVELOPE_SCHEMA, LATEST_VERSION, SOURCES, schema_for)

Check = Callable[[Any], bool]

# Verdicts of plain function validators (``_iso_utc``, ``_uuid``) for strings they accepted:
# deadlines and agency ids repeat across a complaint's events. Bounded, cleared when full.
_ACCEPTED: dict[tuple[Any, str], bool] = {}
_ACCEPTED_MAX = 50_000


def _never(_value: Any) -> bool:
    return False


def _validator_check(validator: Any) -> Check | None:
    """A check equivalent to one validator on the value a field produced, or None if unknown."""
    kind = type(validator)
    if kind is validate.OneOf:
        choices = list(validator.choices)
        if all(type(choice) is str for choice in choices):
            allowed = frozenset(choices)
            return lambda value: type(value) is str and value in allowed
        return None
    if kind is validate.Length and validator.equal is None:
        low, high = validator.min, validator.max
        return lambda value: (low is None or len(value) >= low) and (high is None or len(value) <= high)
    if kind is validate.Range:
        low, high = validator.min, validator.max
        low_inclusive, high_inclusive = validator.min_inclusive, validator.max_inclusive

        def in_range(value: Any) -> bool:
            if low is not None and (value < low if low_inclusive else value <= low):
                return False
            if high is not None and (value > high if high_inclusive else value >= high):
                return False
            return True
        return in_range
    if kind is validate.Regexp:
        regex = validator.regex
        return lambda value: type(value) is str and regex.match(value) is not None
    if callable(validator) and getattr(validator, "__module__", "").startswith("shared."):
        # The catalogue's own function validators (``_iso_utc``, ``_uuid``): run them.
        def run(value: Any, _validator: Any = validator) -> bool:
            if type(value) is not str:
                return False
            key = (_validator, value)
            if key in _ACCEPTED:
                return True
            try:
                _validator(value)
            except Exception:
                return False
            if len(_ACCEPTED) >= _ACCEPTED_MAX:
                _ACCEPTED.clear()
            _ACCEPTED[key] = True
            return True
        return run
    return None


def _field_check(field: Any) -> Check:  # marshmallow's field classes, read dynamically
    """For a present value: True only if ``field.deserialize`` accepts it and leaves it as it is."""
    if field.pre_load or field.post_load or field.data_key is not None:
        return _never
    maybe_validators = [_validator_check(v) for v in field.validators]
    validators = [v for v in maybe_validators if v is not None]
    if len(validators) != len(maybe_validators):
        return _never
    allow_none = field.allow_none
    kind = type(field)
    inner: Check
    if kind is fields.String:
        def inner(value: Any) -> bool:
            return type(value) is str
    elif kind is fields.Integer:  # strict or not, a JSON integer is accepted as it is
        def inner(value: Any) -> bool:
            return type(value) is int
    elif kind is fields.Float and not field.as_string:
        # A JSON number marshmallow turns into a float without complaint: a finite float, or an
        # int small enough to convert exactly (bools are refused by marshmallow, and here).
        def inner(value: Any) -> bool:
            kind = type(value)
            if kind is float:
                return math.isfinite(value)
            return kind is int and -(2 ** 53) <= value <= 2 ** 53
    elif kind is fields.Boolean and field.truthy == {True} and field.falsy == {False}:
        def inner(value: Any) -> bool:
            return value is True or value is False
    elif kind is fields.List:
        item = _field_check(field.inner)
        if item is _never:
            return _never

        def inner(value: Any) -> bool:
            return type(value) is list and all(map(item, value))
    elif kind is fields.Dict:
        key_check = _field_check(field.key_field) if field.key_field is not None else None
        value_check = _field_check(field.value_field) if field.value_field is not None else None
        if key_check is _never or value_check is _never:
            return _never

        def inner(value: Any) -> bool:
            if type(value) is not dict:
                return False
            if key_check is not None and not all(map(key_check, value)):
                return False
            return value_check is None or all(map(value_check, value.values()))
    elif kind is fields.Nested and not field.many and isinstance(field.nested, type) \
            and issubclass(field.nested, Schema) and field.only is None and not field.exclude:
        schema = _schema_check(field.nested(), field.unknown)

        def inner(value: Any) -> bool:
            return type(value) is dict and schema(value)
    else:
        return _never

    # ``inner`` is False for None (no JSON shape it accepts is None).
    if not validators:
        if not allow_none:
            return inner
        return lambda value: value is None or inner(value)
    if len(validators) == 1:
        only = validators[0]
        return lambda value: (allow_none if value is None else inner(value) and only(value))

    def check(value: Any) -> bool:
        if value is None:
            return bool(allow_none)
        return inner(value) and all(validator(value) for validator in validators)
    return check


def _schema_check(schema: Schema, unknown: str | None = None) -> Check:
    hooks = dict(schema._hooks)
    schema_validators = hooks.pop("validates_schema", [])
    if any(hooks.values()) or any(many or options.get("pass_original") for _name, many, options in schema_validators):
        return _never
    unknown = unknown or schema.unknown
    if unknown not in (INCLUDE, RAISE):
        return _never
    checks = []
    for name, field in schema.load_fields.items():
        check = _field_check(field)
        if check is _never:
            return _never
        checks.append((name, field.required, check))
    declared = frozenset(name for name, _required, _check in checks)
    hook_methods = [getattr(schema, name) for name, _many, _options in schema_validators]

    def check_schema(data: dict[str, Any]) -> bool:
        if unknown == RAISE and not declared.issuperset(data):
            return False
        for name, required, check in checks:
            if name in data:
                if not check(data[name]):
                    return False
            elif required:
                return False
        # Every field accepted leaves its value as it is, so the loaded data is ``data`` itself
        # (plus unknown keys, included): the schema's own hooks judge it as marshmallow would.
        for hook in hook_methods:
            try:
                hook(data, partial=None, many=False, unknown=unknown)
            except Exception:
                return False
        return True
    return check_schema


_ENVELOPE = _schema_check(_ENVELOPE_SCHEMA)
_DATA: dict[tuple[str, int], Check] = {}


def accepts(raw: Any, expected_source: str) -> bool:
    """True only if ``validate_envelope(raw, expected_source)`` would return it unchanged and
    the event is at its type's latest version (nothing to lift); False: ask the catalogue."""
    if not isinstance(raw, dict) or not _ENVELOPE(raw):
        return False
    event_type, version = raw["event_type"], raw["schema_version"]
    if raw["source"] != expected_source or SOURCES.get(event_type) != expected_source \
            or LATEST_VERSION.get(event_type) != version:
        return False
    return data_accepted(event_type, version, raw["data"])


def data_accepted(event_type: str, version: int, data: Any) -> bool:
    """True only if the catalogue's schema of ``event_type`` v``version`` accepts ``data``."""
    key = (event_type, version)
    check = _DATA.get(key)
    if check is None:
        if event_type not in SOURCES:
            return False
        try:
            schema = schema_for(event_type, version)
        except Exception:  # an unknown version: the catalogue says why
            return False
        check = _DATA[key] = _schema_check(schema)
    return type(data) is dict and check(data)


__all__ = ["accepts"]
_ = re  # the Regexp validators carry compiled patterns
