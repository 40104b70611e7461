"""The broker settings of issue 18: ``NTBCARE_QUEUE_TYPE`` (quorum unless opted out, nothing
else accepted), the queue arguments it gives, and ``AMQP_URI``'s ``;``-separated addresses."""
from __future__ import annotations

import pytest

from shared.core import config
from shared.glue import broker, queues


def test_quorum_is_the_default_and_classic_an_explicit_opt_out(monkeypatch):
    monkeypatch.delenv("NTBCARE_QUEUE_TYPE", raising=False)
    assert config.queue_type() == "quorum"
    assert queues.arguments() == {"x-queue-type": "quorum"}
    monkeypatch.setenv("NTBCARE_QUEUE_TYPE", "Classic")
    assert config.queue_type() == "classic" and queues.arguments() == {}
    monkeypatch.setenv("NTBCARE_QUEUE_TYPE", "mirrored")
    with pytest.raises(config.ConfigError, match="quorum or classic"):
        config.check_startup_settings()


def test_exclusive_and_auto_delete_queues_stay_classic(monkeypatch):
    monkeypatch.delenv("NTBCARE_QUEUE_TYPE", raising=False)
    assert queues.arguments(exclusive=True) == {} and queues.arguments(auto_delete=True) == {}
    assert queues.arguments(durable=False) == {}


def test_several_addresses_each_tried_once(monkeypatch):
    uri = "amqp://u:p@a:5672/v; amqp://u:p@b:5672/v;amqp://u:p@c:5672/v;"
    assert config.amqp_addresses(uri) == ["amqp://u:p@a:5672/v", "amqp://u:p@b:5672/v", "amqp://u:p@c:5672/v"]
    assert broker.retries(uri) == 2  # three attempts in all
    assert broker.retries("amqp://u:p@a:5672/v") == 1  # one broker: a second chance, as before


def test_mixing_plain_and_tls_addresses_is_refused(monkeypatch):
    monkeypatch.setenv("AMQP_URI", "amqps://u:p@a:5671/v;amqp://u:p@b:5672/v")
    with pytest.raises(config.ConfigError, match="mixes"):
        config.amqp_ssl()
