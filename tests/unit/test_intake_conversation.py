"""The Messenger conversation rules as pure decisions."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.intake.domain.conversation import (AMEND, AWAIT_NEW, FILE, MESSAGE, STATUS, Conversation, decide,
                                          extended_text, status_query)

T0 = datetime(2024, 5, 1, 3, 0, tzinfo=timezone.utc)
CODE = "NTB-7K3QD-9XW2M"


def conversation(**changes) -> Conversation:
    values = dict(complaint_id="c1", tracking_code=CODE, complaint_open=True, in_first_burst=True, last_message_at=T0)
    values.update(changes)
    return Conversation(**values)


def test_first_message_files():
    assert decide("Jalan rusak", False, T0, None, 120).action == FILE


@pytest.mark.parametrize("seconds, expected", [(5, AMEND), (120, AMEND), (121, MESSAGE), (3600, MESSAGE),
                                               (-30, AMEND)])   # out of order but close: same burst
def test_bubbles_within_the_window_amend(seconds, expected):
    assert decide("lanjutan", False, T0 + timedelta(seconds=seconds), conversation(), 120).action == expected


def test_after_the_first_burst_messages_stay_messages():
    later = conversation(in_first_burst=False)
    assert decide("info tambahan", False, T0 + timedelta(seconds=10), later, 120).action == MESSAGE


def test_closed_or_forgotten_complaint_files_a_new_one():
    assert decide("ada lagi", False, T0 + timedelta(seconds=10), conversation(complaint_open=False), 120).action == FILE
    assert decide("ada lagi", False, T0, conversation(complaint_id=None, tracking_code=None), 120).action == FILE


def test_aduan_baru():
    with_text = decide("ADUAN BARU: sampah di Senggigi", False, T0, conversation(), 120)
    assert with_text.action == FILE and with_text.text == "sampah di Senggigi"
    assert decide("aduan baru", False, T0, conversation(), 120).action == AWAIT_NEW
    assert decide("Aduan baru", True, T0, conversation(), 120).action == FILE


@pytest.mark.parametrize("text, code", [
    ("CEK NTB-7K3QD-9XW2M", CODE), ("cek ntb 7k3qd 9xw2m", CODE), ("Cek status NTB-7K3QD-9XW2M", CODE),
    ("cek 7K3QD9XW2M", CODE), ("CEK NTB-7K3QD-9XW2M terima kasih", CODE), ("cek", ""), ("cek status aduan saya", ""),
    ("Cek jalan rusak di Praya", None), ("Jalan rusak, cek NTB-7K3QD-9XW2M", None),
])
def test_status_queries(text, code):
    assert status_query(text) == code


def test_cek_alone_asks_about_the_current_complaint():
    decision = decide("cek", False, T0, conversation(), 120)
    assert decision.action == STATUS and decision.tracking_code == CODE
    assert decide("cek", False, T0, None, 120).tracking_code == ""
    assert decide("Cek jalan rusak di Praya", False, T0, None, 120).action == FILE


def test_extended_text():
    assert extended_text("Pak mau lapor", " jalan rusak ") == "Pak mau lapor\njalan rusak"
    assert extended_text("Pak mau lapor", "") == "Pak mau lapor"
