"""The console's signed session cookie and its settings: a cookie round-trips, an altered,
foreign or expired one is ignored, CSRF tokens compare exactly, token marks follow the token,
and routing refuses to start in production without ROUTING_CONSOLE_SECRET."""
from __future__ import annotations

import pytest

from shared.core.config import ConfigError
from services.routing.adapters.console import config
from services.routing.adapters.console.session import SessionCodec, anonymous, csrf_matches

SECRET = b"s" * 32
NOW = 1_700_000_000


def test_a_session_round_trips_and_names_its_actor():
    codec = SessionCodec(SECRET)
    session = codec.signed_in("dpupr", "Budi Santoso", "ab" * 32, NOW)
    loaded = codec.loads(codec.dumps(session), NOW + 60)
    assert loaded == session
    assert loaded.signed_in and loaded.actor == "dpupr:Budi Santoso"
    assert codec.loads(codec.dumps(anonymous(NOW)), NOW).signed_in is False


def test_altered_foreign_and_expired_cookies_are_ignored():
    codec = SessionCodec(SECRET, max_age_seconds=3600)
    value = codec.dumps(codec.signed_in("dpupr", "Budi", "ab" * 32, NOW))
    payload, signature = value.split(".")
    desk_payload = codec.dumps(codec.signed_in("diskominfotik", "Budi", "ab" * 32, NOW)).split(".")[0]
    assert codec.loads(f"{desk_payload}.{signature}", NOW) is None       # payload swapped
    assert codec.loads(value[:-2] + "xx", NOW) is None                   # signature altered
    assert SessionCodec(b"t" * 32).loads(value, NOW) is None             # another secret
    assert codec.loads(value, NOW + 3601) is None                        # expired
    assert codec.loads(value, NOW - 10) is None                          # from the future
    for junk in (None, "", "abc", "a.b.c", "!!!.???"):
        assert codec.loads(junk, NOW) is None


def test_csrf_tokens_must_match_exactly():
    session = anonymous(NOW)
    assert csrf_matches(session, session.csrf)
    assert not csrf_matches(session, None)
    assert not csrf_matches(session, "")
    assert not csrf_matches(session, session.csrf[:-1])
    assert not csrf_matches(None, session.csrf)
    assert anonymous(NOW).csrf != session.csrf


def test_a_token_mark_names_one_token_without_revealing_it():
    codec = SessionCodec(SECRET)
    mark = codec.token_mark("ab" * 32)
    assert "ab" * 32 not in mark
    assert codec.mark_is_current(mark, ["cd" * 32, "ab" * 32])
    assert not codec.mark_is_current(mark, ["cd" * 32])
    assert not codec.mark_is_current(mark, [])


def test_production_refuses_to_start_without_a_secret(monkeypatch):
    monkeypatch.delenv("ROUTING_CONSOLE_SECRET", raising=False)
    monkeypatch.setenv("NTBCARE_ENV", "production")
    with pytest.raises(ConfigError, match="ROUTING_CONSOLE_SECRET"):
        config.check()
    monkeypatch.setenv("ROUTING_CONSOLE_SECRET", "too-short")
    with pytest.raises(ConfigError, match="at least 32"):
        config.check()
    monkeypatch.setenv("ROUTING_CONSOLE_SECRET", "x" * 40)
    config.check()
    assert config.console_secret() == b"x" * 40


def test_development_makes_one_random_secret_per_process(monkeypatch):
    monkeypatch.delenv("ROUTING_CONSOLE_SECRET", raising=False)
    monkeypatch.setenv("NTBCARE_ENV", "development")
    first = config.console_secret()
    assert len(first) == 32 and config.console_secret() == first


def test_the_secure_cookie_setting_is_checked(monkeypatch):
    monkeypatch.setenv("ROUTING_CONSOLE_SECRET", "x" * 40)
    for mode in ("auto", "true", "false", "TRUE"):
        monkeypatch.setenv("ROUTING_CONSOLE_SECURE_COOKIE", mode)
        config.check()
    monkeypatch.setenv("ROUTING_CONSOLE_SECURE_COOKIE", "sometimes")
    with pytest.raises(ConfigError, match="ROUTING_CONSOLE_SECURE_COOKIE"):
        config.check()
