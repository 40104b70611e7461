"""Unit tests for notification's message texts: Indonesian templates, confidentiality of the
routed and answer messages, dates in WITA from the shared reference, and splitting for the Send
API. (The public status is not computed here: routing's events carry it; see
test_notification_composer.py.)"""

import random
import re
from datetime import datetime, timezone

import jinja2
import pytest

from services.notification.domain import messages
from shared.core import reference
from services.notification.domain.messages import (
    agency_names,
    catalogue,
    daftar,
    desk_reason,
    render,
    split_text,
)

DIRECTORY = {
    "dinas_pupr": {"name": "Dinas PUPR Provinsi NTB"},
    "polda_ntb": "Polda NTB",
    "kota_mataram": {"name": "Pemerintah Kota Mataram"},
}
WHEN = datetime(2020, 11, 30, 17, 5, tzinfo=timezone.utc)

CONTEXTS = {
    "filed_ack": dict(tracking_code="K7QX-42MD"),
    "routed": dict(tracking_code="K7QX-42MD", agencies=["Dinas PUPR Provinsi NTB"]),
    "routed_confidential": dict(tracking_code="K7QX-42MD"),
    "responded": dict(tracking_code="K7QX-42MD", agency_name="Dinas PUPR Provinsi NTB",
                      answer="Jalan akan diperbaiki bulan depan."),
    "responded_confidential": dict(tracking_code="K7QX-42MD",
                                   answer="Oknum sudah diperiksa dan uang dikembalikan."),
    "resolved": dict(tracking_code="K7QX-42MD"),
    "dismissed": dict(tracking_code="K7QX-42MD", reason="Bukan kewenangan pemerintah daerah."),
    "dismissed_duplicate": dict(tracking_code="K7QX-42MD", duplicate_of="P3RT-8ZKA"),
    "status_full": dict(tracking_code="K7QX-42MD", status_word="diproses",
                        agencies=["Dinas PUPR Provinsi NTB"], last_update=WHEN),
    "status_public": dict(tracking_code="K7QX-42MD", status_word="diproses"),
    "status_unknown": dict(tracking_code="ZZZZ"),
    "comment_public": dict(tracking_code="K7QX-42MD"),
    "comment_public_update": dict(tracking_code="K7QX-42MD", status_word="selesai"),
    "follow_up_question": dict(tracking_code="K7QX-42MD"),
    "rating_question": dict(tracking_code="K7QX-42MD"),
    "rating_unclear": dict(tracking_code="K7QX-42MD"),
    "rated_thanks": dict(tracking_code="K7QX-42MD", score=4),
    "reopened": dict(tracking_code="K7QX-42MD", agencies=["Dinas PUPR Provinsi NTB"]),
    "reopened_desk": dict(tracking_code="K7QX-42MD"),
    "reopen_refused": dict(tracking_code="K7QX-42MD", reason="period_over", days=14),
    "follow_up_stale": dict(tracking_code="K7QX-42MD", status_word="diproses"),
}

# Words any of our Indonesian texts uses; a text with none of them is not in Indonesian.
INDONESIAN = re.compile(r"\b(aduan|Anda|kode|status|kepada|dari|ketik|silakan)\b", re.IGNORECASE)


def test_every_citizen_template_is_covered_here():
    citizen = {n for n in catalogue().names() if "." not in n}
    assert citizen == set(CONTEXTS)


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_every_template_renders_in_indonesian(name):
    text = render(name, **CONTEXTS[name])
    assert text and text == text.strip()
    assert INDONESIAN.search(text)
    assert "{{" not in text and "{%" not in text
    assert "  " not in text
    assert CONTEXTS[name]["tracking_code"] in text


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_missing_context_is_an_error_not_a_gap(name):
    with pytest.raises(jinja2.UndefinedError):
        render(name)


def test_filed_ack_tells_how_to_ask_for_status():
    text = render("filed_ack", tracking_code="K7QX-42MD")
    assert "K7QX-42MD" in text
    assert "ketik CEK K7QX-42MD" in text


def test_routed_names_the_agencies_from_the_directory():
    names = agency_names(["dinas_pupr", "kota_mataram"], DIRECTORY)
    assert names == ["Dinas PUPR Provinsi NTB", "Pemerintah Kota Mataram"]
    text = render("routed", tracking_code="K7QX", agencies=names, coordinating=["Polda NTB"])
    assert "Dinas PUPR Provinsi NTB dan Pemerintah Kota Mataram" in text
    assert "Polda NTB" in text


def test_agency_names_falls_back_to_the_code():
    assert agency_names(["polda_ntb", "unknown_opd"], DIRECTORY) == ["Polda NTB", "unknown_opd"]


def test_confidential_routed_message_identifies_nobody():
    context = dict(
        tracking_code="PGL1-XY9Q",
        # Everything a careless caller might pass along must stay out of the text.
        agencies=["Polda NTB"], agency_name="Polda NTB", coordinating=["Inspektorat"],
        reporter_name="Baiq Nurul", phone="081234567890", email="baiq@example.org",
        psid="PSID-77", text="Oknum petugas di kantor Samsat Selong meminta uang",
    )
    text = render("routed_confidential", **context)
    assert "PGL1-XY9Q" in text
    for secret in ("Polda", "Inspektorat", "Baiq", "0812", "example.org", "PSID", "Samsat", "Selong"):
        assert secret not in text
    assert "dirahasiakan" in text


def test_responded_is_attributed_to_the_agency():
    text = render("responded", **CONTEXTS["responded"])
    assert text.startswith("Jawaban dari Dinas PUPR Provinsi NTB: Jalan akan diperbaiki bulan depan.")


def test_confidential_answer_carries_the_answer_but_names_no_agency():
    context = dict(CONTEXTS["responded_confidential"], agency_name="Polda NTB", agencies=["Polda NTB"])
    text = render("responded_confidential", **context)
    assert "Oknum sudah diperiksa dan uang dikembalikan." in text and "K7QX-42MD" in text
    assert "Polda" not in text and "dirahasiakan" in text


def test_daftar_joins_names_the_indonesian_way():
    assert daftar([]) == "" and daftar(["A"]) == "A"
    assert daftar(["A", "B", "C"]) == "A, B dan C"


def test_resolved_and_dismissed_give_outcome_and_reason():
    resolved = render("resolved", tracking_code="K7QX", agency_name="Dinas Sosial", reason="Bantuan sudah disalurkan.")
    assert "selesai" in resolved and "Dinas Sosial" in resolved and "Bantuan sudah disalurkan." in resolved
    dismissed = render("dismissed", tracking_code="K7QX", reason="Aduan tidak jelas.")
    assert "ditolak" in dismissed and "Aduan tidak jelas." in dismissed
    duplicate = render("dismissed_duplicate", tracking_code="K7QX", duplicate_of="P3RT-8ZKA", reason="Sama.")
    assert "P3RT-8ZKA" in duplicate and "CEK P3RT-8ZKA" in duplicate


def test_status_full_and_public():
    full = render("status_full", **CONTEXTS["status_full"])
    assert "diproses" in full and "Dinas PUPR Provinsi NTB" in full
    assert "1 Desember 2020 pukul 01.05 WITA" in full  # 17:05 UTC is 01:05 next day in WITA
    assert render("status_full", tracking_code="K", status_word="diterima",
                  last_update="2020-11-30T17:05:00Z").endswith("WITA.")
    # One way of writing a time for people, the shared reference's.
    assert reference.tanggal(WHEN) in full
    public = render("status_public", **CONTEXTS["status_public"])
    assert public == "Status aduan K7QX-42MD: diproses."


def test_comment_public_reply_has_tracking_code_and_no_personal_details():
    text = render("comment_public", tracking_code="K7QX-42MD", reporter_name="Lalu Ahmad", phone="0812")
    assert "K7QX-42MD" in text and "Messenger" in text
    assert "Lalu Ahmad" not in text and "0812" not in text


def test_desk_reasons_exist_for_every_policy_reason():
    from services.notification.domain import policy
    reasons = [
        policy.MESSENGER_WINDOW_CLOSED, policy.OUTSIDE_24H_AUTOMATED, policy.PRIVATE_REPLY_USED,
        policy.PRIVATE_REPLY_WINDOW_CLOSED, policy.INVALID_REPLY_TO, policy.WINDOW_EXPIRED,
        policy.RETRIES_EXHAUSTED, policy.PERSON_UNAVAILABLE, policy.BAD_REQUEST,
        policy.PERMANENT_ERROR, policy.OUTSIDE_WINDOW_REASON, policy.PRIVATE_REPLY_REFUSED,
        policy.HUMAN_AGENT_NOT_APPROVED, policy.COMMENT_REMOVED,
    ]
    # Every reason Meta's error table can end a message with (a held Page never ends one).
    reasons += [rule.reason for rule in policy.ERROR_TABLE if rule.action != policy.HOLD_PAGE]
    names = catalogue().names()
    for reason in reasons:
        assert f"undeliverable.{reason}" in names
        assert desk_reason(reason)
    assert "(kode 2)" in desk_reason("retries_exhausted", code=2)
    assert desk_reason("something_new") == render("undeliverable.unknown")


def test_templates_path_can_be_overridden(tmp_path, monkeypatch):
    path = tmp_path / "custom.yaml"
    path.write_text("messages:\n  filed_ack: 'Kode: {{ tracking_code }}'\n", encoding="utf-8")
    monkeypatch.setenv(messages.TEMPLATES_PATH_ENV, str(path))
    assert render("filed_ack", tracking_code="AB12") == "Kode: AB12"


# --- split_text -----------------------------------------------------------------------------


def sentence_text(total, seed=1):
    rng = random.Random(seed)
    words = ["jalan", "rusak", "di", "desa", "Sembalun", "sudah", "lama", "belum", "diperbaiki",
             "warga", "mohon", "perhatian", "pemerintah", "kabupaten", "Lombok", "Timur"]
    sentences, size, i = [], 0, 0
    while size < total:
        n = rng.randint(4, 30)
        body = " ".join(rng.choice(words) for _ in range(n))
        s = f"Kalimat{i} {body}{rng.choice('.!?')}"
        sentences.append(s)
        size += len(s) + 1
        i += 1
    return " ".join(sentences)[:total].rstrip() + ".", sentences


def test_split_5000_chars_keeps_order_sentences_and_limit():
    text, _ = sentence_text(5000)
    assert len(text) >= 4990
    parts = split_text(text)
    assert len(parts) >= 3
    assert all(len(p) < 2000 for p in parts)
    assert " ".join(parts).split() == text.split()
    for part in parts:
        assert part[-1] in ".!?"  # cut only at sentence ends
    numbers = [int(n) for n in re.findall(r"Kalimat(\d+)", " ".join(parts))]
    assert numbers == sorted(numbers)


def test_split_short_text_is_one_part_and_empty_is_none():
    assert split_text("Halo. Apa kabar?") == ["Halo. Apa kabar?"]
    assert split_text("") == []
    assert split_text("   \n ") == []


def test_split_exact_limit_edges():
    assert split_text("a" * 1999) == ["a" * 1999]
    parts = split_text("b" * 2000)
    assert parts == ["b" * 1999, "b"]


def test_split_overlong_sentence_cuts_between_words():
    words = [f"kata{i}" for i in range(900)]
    text = " ".join(words) + "."  # one sentence of ~6,000 chars
    parts = split_text(text)
    assert all(len(p) < 2000 for p in parts)
    assert " ".join(parts).split() == text.split()  # no word was cut


def test_split_overlong_word_is_cut_and_rejoins():
    word = "x" * 4500
    parts = split_text(f"Awal. {word} akhir.")
    assert all(len(p) < 2000 for p in parts)
    assert "".join(parts).replace(" ", "") == f"Awal.{word}akhir."


def test_split_prefers_sentence_boundaries_with_newlines_and_quotes():
    first = "Kalimat pertama " + "x " * 700 + "selesai.\n"
    second = 'Ia berkata "cukup!" Kalimat kedua ' + "y " * 700 + "tamat."
    parts = split_text(first + second)
    # '"cukup!"' ends a sentence even though a closing quote follows the "!".
    assert parts[0].endswith('selesai.\nIa berkata "cukup!"')
    assert parts[1].startswith("Kalimat kedua")
    assert parts[1].endswith("tamat.")


def test_split_custom_limit():
    parts = split_text("Satu dua. Tiga empat. Lima.", limit=12)
    assert parts == ["Satu dua.", "Tiga empat.", "Lima."]


@pytest.mark.parametrize("seed", range(5))
def test_split_random_texts_rejoin_to_the_same_words(seed):
    text, _ = sentence_text(random.Random(seed).randint(100, 9000), seed)
    parts = split_text(text)
    assert all(0 < len(p) < 2000 for p in parts)
    assert " ".join(parts).split() == text.split()
