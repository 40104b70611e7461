"""Hypothesis strategies shared by the fuzz suite: arbitrary JSON, Meta-shaped webhook bodies
whose every field may hold anything, and hostile strings (lone surrogates, NULs, huge numbers,
deep nesting) that have broken parsers before."""
from __future__ import annotations

from hypothesis import settings, strategies as st

# Reproducible in CI: the same examples every run (no example database either).
PURE = settings(max_examples=800, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(settings.default.suppress_health_check))
HTTP = settings(max_examples=200, derandomize=True, deadline=None, database=None)

PAGE_ID = "100000000000001"

hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udfffb", "x" * 300, "²", "٣٣", "-", "1e309",
                     "NaN", "+0000", "2024-05-01T03:04:05+0000", "2024-13-45T99:99:99Z",
                     "9" * 30, "-1", "0", "🙂" * 10, "\u202e", "ADUAN BARU", "CEK NTB-7K3QD-9XW2M",
                     "Jalan rusak parah di Praya Lombok Tengah"]),
)
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.sampled_from([0, -1, 10 ** 20, 1714532645, 1714532645123, 253402300800000, 2 ** 63]),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
json_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.text(max_size=12), children, max_size=4)), max_leaves=12)


def anything_or(strategy, one_in: int = 4):
    """Mostly the plausible shape, one time in ``one_in`` anything at all. (``st.one_of`` with
    the same strategy repeated would not weigh it: identical branches are merged.)"""
    return st.integers(min_value=1, max_value=one_in).flatmap(
        lambda n: json_values if n == 1 else strategy)


ids = anything_or(st.one_of(st.sampled_from([PAGE_ID, "200000000000002", "7000001"]),
                            st.integers(min_value=0, max_value=2 ** 64), hostile_text))
times = anything_or(st.one_of(st.integers(min_value=-(2 ** 64), max_value=2 ** 64), hostile_text,
                              st.floats(allow_nan=True, allow_infinity=True)))
attachments = anything_or(st.lists(anything_or(st.fixed_dictionaries(
    {}, optional={"type": anything_or(st.sampled_from(["image", "location", "file", "video"])),
                  "payload": anything_or(st.fixed_dictionaries({}, optional={
                      "url": anything_or(st.sampled_from(["https://example.org/a.jpg", "", "javascript:x"])),
                      "coordinates": json_values, "sticker_id": json_values}))})), max_size=3))

message = st.fixed_dictionaries({}, optional={
    "mid": ids, "text": anything_or(hostile_text), "attachments": attachments,
    "is_echo": json_values, "sticker_id": json_values})
messaging_item = anything_or(st.fixed_dictionaries({}, optional={
    "sender": anything_or(st.fixed_dictionaries({}, optional={"id": ids})),
    "recipient": anything_or(st.fixed_dictionaries({}, optional={"id": ids})),
    "timestamp": times,
    "message": anything_or(message),
    "delivery": json_values, "read": json_values, "postback": json_values}))
change_item = anything_or(st.fixed_dictionaries({}, optional={
    "field": anything_or(st.sampled_from(["feed", "messages", "mention"])),
    "value": anything_or(st.fixed_dictionaries({}, optional={
        "item": anything_or(st.sampled_from(["comment", "status", "reaction"])),
        "verb": anything_or(st.sampled_from(["add", "edited", "remove", "hide", "unhide", "block"])),
        "comment_id": ids, "post_id": ids, "parent_id": ids,
        "from": anything_or(st.fixed_dictionaries({}, optional={"id": ids, "name": hostile_text})),
        "message": anything_or(hostile_text), "created_time": times,
        "photo": anything_or(st.sampled_from(["https://example.org/p.jpg", ""]))}))}))
entry = anything_or(st.fixed_dictionaries({}, optional={
    "id": ids, "time": times,
    "messaging": anything_or(st.lists(messaging_item, max_size=3)),
    "changes": anything_or(st.lists(change_item, max_size=3)),
    "standby": anything_or(st.lists(json_values, max_size=2))}))
webhook_bodies = anything_or(st.fixed_dictionaries({"object": anything_or(st.just("page"))}, optional={
    "entry": anything_or(st.lists(entry, max_size=3))}))


# -- mostly valid deliveries, each field occasionally anything: these reach filing, amending,
#    status requests, comment edits and removals, duplicates (mids and comment ids repeat) -----
def mostly(strategy, one_in: int = 40):
    return anything_or(strategy, one_in)


realistic_text = st.one_of(
    st.sampled_from(["Jalan rusak parah di Praya Lombok Tengah", "Pungli di pasar Bertais Mataram",
                     "ADUAN BARU", "ADUAN BARU: sampah menumpuk di Bima", "cek", "CEK NTB-7K3QD-9XW2M",
                     "Lampu jalan mati", "ok", "\u202eteks terbalik", "🙂" * 5]),
    st.text(min_size=1, max_size=60))
psids = st.integers(min_value=7000001, max_value=7000200).map(str)
mids = st.integers(min_value=1, max_value=10 ** 9).map(lambda n: f"m_{n}")
comment_ids = st.integers(min_value=1, max_value=300).map(lambda n: f"111_{n}")
ms_times = st.integers(min_value=1_600_000_000_000, max_value=1_900_000_000_000)
mostly_message = st.fixed_dictionaries({
    "sender": mostly(st.fixed_dictionaries({"id": mostly(psids)})),
    "recipient": mostly(st.fixed_dictionaries({"id": mostly(st.just(PAGE_ID))})),
    "timestamp": mostly(ms_times),
    "message": mostly(st.fixed_dictionaries({"mid": mostly(mids)}, optional={
        "text": mostly(realistic_text), "attachments": attachments, "is_echo": st.booleans()}))})
mostly_comment = st.fixed_dictionaries({
    "field": mostly(st.just("feed")),
    "value": mostly(st.fixed_dictionaries({
        "item": mostly(st.just("comment")),
        "verb": mostly(st.sampled_from(["add", "add", "edited", "remove", "hide"])),
        "comment_id": mostly(comment_ids), "post_id": mostly(st.just("111")),
        "from": mostly(st.fixed_dictionaries({"id": mostly(psids), "name": realistic_text})),
        "message": realistic_text,
        "created_time": mostly(st.one_of(st.integers(min_value=1_600_000_000, max_value=1_900_000_000),
                                         st.just("2024-05-01T03:04:05+0000")))},
        optional={"parent_id": mostly(st.sampled_from(["111", "111_1", "111_2"]))}))})
page_ids = st.integers(min_value=0, max_value=9).map(lambda n: "300000000000003" if n == 0 else PAGE_ID)
mostly_entry = st.one_of(
    st.fixed_dictionaries({"id": mostly(page_ids), "time": ms_times,
                           "messaging": st.lists(mostly_message, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"id": mostly(page_ids), "time": ms_times,
                           "changes": st.lists(mostly_comment, min_size=1, max_size=3)}))
mostly_valid_bodies = st.fixed_dictionaries({
    "object": mostly(st.just("page"), 80),
    "entry": mostly(st.lists(mostly_entry, min_size=1, max_size=2), 80)})
