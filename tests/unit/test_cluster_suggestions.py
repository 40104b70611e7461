"""Duplicates and clusters (``services/routing/domain/clusters.py``): the word sets and their
similarity, the suggestion rules (same post, same category and region with similar words, the
time window, the best match and its anchor), the link command, and how an agency's step on a
primary is recorded on a linked complaint."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.routing.domain import clusters
from services.routing.domain.clusters import Filing, SuggestionRules, describe, similarity, words_of
from services.routing.domain.disposition import ComplaintClosed, Disposition, InvalidAction
from services.routing.domain.rules import Decision
from services.routing.domain.sla import SlaPolicy, WorkingCalendar, load_holidays
from shared.core.events.catalogue import LATEST_VERSION, InvalidEvent, validate_data

T0 = datetime(2026, 8, 11, 1, 0, tzinfo=timezone.utc)
DESK = "diskominfotik"
RULES = SuggestionRules(threshold=0.35, window=timedelta(hours=72))


def filing(n: int, text: str, *, category="infrastruktur", region="5202", post=None, hours=0.0) -> Filing:
    return Filing(f"00000000-0000-4000-8000-{n:012d}", f"NTB-{n:05d}", category, region, post,
                  T0 + timedelta(hours=hours), words_of(text))


# --- words and similarity -------------------------------------------------------------------------

def test_words_are_normalised_spellings_expanded_particles_and_stop_words_dropped():
    assert words_of("Jln di Praya RUSAK parahhh, lubangnya byk!! 2026") == {
        "jalan", "praya", "rusak", "parah", "lubang", "byk"}
    assert words_of("yang di ke dan pak") == frozenset()
    assert words_of("Jalanan rsk") == {"jalan", "rusak"}
    assert words_of("") == frozenset()


def test_similarity_is_the_jaccard_index_of_the_word_sets():
    assert similarity({"jalan", "rusak"}, {"jalan", "rusak"}) == 1.0
    assert similarity({"jalan", "rusak", "praya"}, {"jalan", "rusak", "lubang"}) == 0.5
    assert similarity({"jalan"}, {"sampah"}) == 0.0
    assert similarity(set(), set()) == 0.0


# --- the suggestion rules -------------------------------------------------------------------------

def test_same_category_and_region_with_similar_words_match_and_say_why():
    first = filing(1, "Jalan di Praya rusak parah banyak lubang")
    second = filing(2, "jln praya rusak parah, lubangnya dalam", hours=5)
    match = RULES.match(second, first)
    assert match is not None
    assert match.because == (clusters.SAME_PLACE, clusters.SIMILAR_WORDS)
    assert match.common_words == ("jalan", "lubang", "parah", "praya", "rusak")
    assert match.score >= 0.35 and match.hours_apart == 5.0


def test_different_words_region_category_or_too_far_apart_do_not_match():
    road = filing(1, "Jalan di Praya rusak parah banyak lubang")
    assert RULES.match(filing(2, "Jembatan gantung putus di Praya"), road) is None       # other words
    assert RULES.match(filing(3, "Jalan rusak parah banyak lubang", region="5203"), road) is None
    assert RULES.match(filing(4, "Jalan rusak parah lubang", category="lingkungan_hidup"), road) is None
    assert RULES.match(filing(5, "Jalan di Praya rusak parah banyak lubang", hours=73), road) is None
    # An unknown region is no common ground.
    unknown = filing(6, "Jalan rusak parah lubang", region=None)
    assert RULES.match(filing(7, "Jalan rusak parah lubang", region=None), unknown) is None


def test_comments_under_the_same_post_match_whatever_their_words():
    post = "100000000000001_42"
    first = filing(1, "Jalan ambles di Kopang!", post=post)
    other_words = filing(2, "Kapan diperbaiki pak??", category="lainnya", region=None, post=post, hours=1)
    match = RULES.match(other_words, first)
    assert match is not None and match.because == (clusters.SAME_POST,)
    assert RULES.match(filing(3, "Kapan diperbaiki", post="100000000000001_43"), first) is None
    assert RULES.match(filing(4, "Jalan ambles di Kopang", post=post, hours=100), first) is None


def test_the_best_match_prefers_the_same_post_then_the_score_then_the_earliest():
    new = filing(9, "Jalan di Praya rusak parah banyak lubang", post="p_1", hours=10)
    same_place_exact = filing(1, "Jalan di Praya rusak parah banyak lubang")
    same_post_vague = filing(2, "Tolong admin", post="p_1", hours=1)
    assert RULES.best(new, [same_place_exact, same_post_vague]).candidate_id == same_post_vague.complaint_id
    earlier, later = filing(3, "Jalan Praya rusak parah"), filing(4, "Jalan Praya rusak parah", hours=2)
    assert RULES.best(new, [later, earlier]).candidate_id == earlier.complaint_id
    assert RULES.best(new, []) is None


def test_a_suggestion_points_at_the_anchor_so_a_post_gives_one_cluster_not_a_chain():
    # B was suggested to join A, C matched B best: C is suggested to join A too.
    assert clusters.anchor("B", linked_to={}, pending_to={"B": "A"}) == "A"
    assert clusters.anchor("B", linked_to={"B": "A"}, pending_to={}) == "A"
    assert clusters.anchor("A", linked_to={}, pending_to={}) == "A"
    assert clusters.anchor("A", linked_to={}, pending_to={"A": "B", "B": "A"}) == "B"  # never a circle


def test_the_grounds_are_described_for_the_desk():
    text = describe([clusters.SAME_POST, clusters.SIMILAR_WORDS], ["jalan", "rusak"], 0.5, 3.2)
    assert text == ("komentar pada postingan Facebook yang sama; kata yang sama: jalan, rusak; "
                    "kemiripan kata 0,50; selisih 3 jam")


# --- linking and one answer for the cluster ------------------------------------------------------

@pytest.fixture(scope="module")
def policy():
    return SlaPolicy.from_env(None, WorkingCalendar(load_holidays()))


def disposition(n: int, decision: Decision | None, policy) -> Disposition:
    d = Disposition.new(f"00000000-0000-4000-8000-{n:012d}", f"NTB-{n:05d}", "infrastruktur", "5202",
                        "normal", False, T0, DESK)
    if decision is not None:
        record(d, d.route(decision, T0, policy))
    return d


def record(d: Disposition, events) -> list:
    stamped = d.stamped(events)
    for event_type, data in stamped:
        validate_data(event_type, LATEST_VERSION[event_type], data)
    d.apply_all(stamped, T0)
    return stamped


TO_DPUPR = Decision(["dpupr"], [], "rule:x", "Infrastruktur.")
TO_DESK = Decision([DESK], [], "rule:desk-fallback", "Tidak ada aturan.", at_desk=True)


def test_link_records_complaint_linked_with_its_grounds_and_refuses_nonsense(policy):
    primary, member = disposition(1, TO_DPUPR, policy), disposition(2, TO_DESK, policy)
    [(event_type, data)] = record(member, member.link(primary.complaint_id, primary.tracking_code,
                                                      "komentar pada postingan yang sama", "diskominfotik:Sari",
                                                      [clusters.SAME_POST], 0.2))
    assert event_type == "ComplaintLinked"
    assert data["primary_complaint_id"] == primary.complaint_id and data["because"] == ["same_post"]
    assert data["lifecycle"]["status"] == "diterima"       # linking moves nothing by itself
    assert member.linked_to == primary.complaint_id
    with pytest.raises(InvalidAction):
        clusters.check_link(member, primary, member_has_links=False)      # already linked
    with pytest.raises(InvalidAction):
        clusters.check_link(primary, primary, member_has_links=False)     # itself
    with pytest.raises(InvalidAction):
        clusters.check_link(primary, disposition(4, TO_DESK, policy), member_has_links=True)  # a primary
    with pytest.raises(InvalidAction):
        disposition(5, TO_DESK, policy).link(primary.complaint_id, primary.tracking_code, "  ", "x")
    dismissed = disposition(6, TO_DESK, policy)
    record(dismissed, dismissed.dismiss("spam", "diskominfotik:Sari"))
    with pytest.raises(ComplaintClosed):
        clusters.check_link(dismissed, primary, member_has_links=False)


def test_a_linked_complaint_takes_the_primarys_agencies_then_each_of_its_steps(policy):
    primary, member = disposition(1, TO_DPUPR, policy), disposition(2, TO_DESK, policy)
    record(member, member.link(primary.complaint_id, primary.tracking_code, "sama", "diskominfotik:Sari"))

    ack = primary.acknowledge("dpupr", "dpupr:budi")
    record(primary, ack)
    steps = clusters.follow_step(member, primary, ack[0], T0, policy)
    assert [t for t, _ in steps] == ["ComplaintRouted", "ComplaintAcknowledged"]
    assert steps[0][1]["decided_by"] == clusters.CLUSTER_RULE and steps[0][1]["lead_agencies"] == ["dpupr"]
    record(member, steps)
    assert member.public_status == "diproses"

    answer = primary.respond("dpupr", "Perbaikan selesai hari ini.", True, "dpupr:budi")
    record(primary, answer)
    steps = clusters.follow_step(member, primary, answer[0], T0, policy)
    assert [t for t, _ in steps] == ["ComplaintResponded", "ComplaintResolved"]
    assert steps[0][1]["text"] == "Perbaikan selesai hari ini."
    record(member, steps)
    assert member.public_status == primary.public_status == "selesai"
    # Nothing more on a closed member; a step that is not an agency's is never copied.
    assert clusters.follow_step(member, primary, answer[0], T0, policy) == []
    assert clusters.follow_step(member, primary, ("ComplaintDismissed", {}), T0, policy) == []


def test_a_complaint_joining_late_catches_up_with_the_latest_answer(policy):
    primary = disposition(1, TO_DPUPR, policy)
    first = primary.respond("dpupr", "Sedang disurvei.", False, "dpupr:budi")
    record(primary, first)
    second = primary.respond("dpupr", "Sudah diperbaiki.", True, "dpupr:budi")
    record(primary, second)
    steps = clusters.catch_up_steps(primary, [first[0][1], second[0][1]])
    assert steps == [("ComplaintResponded", {"agency_code": "dpupr", "text": "Sudah diperbaiki.",
                                             "resolved": True, "actor": "dpupr:budi"})]
    acknowledged = disposition(2, TO_DPUPR, policy)
    record(acknowledged, acknowledged.acknowledge("dpupr", "dpupr:ani"))
    assert clusters.catch_up_steps(acknowledged, []) == [
        ("ComplaintAcknowledged", {"agency_code": "dpupr", "actor": clusters.CLUSTER_RULE})]
    # A primary still at the desk gives its members no agencies yet.
    waiting, member = disposition(3, TO_DESK, policy), disposition(4, TO_DESK, policy)
    assert clusters.follow_agencies(member, waiting, T0, policy) == []


def test_complaint_linked_is_in_the_catalogue_without_facebook_ids(policy):
    member = disposition(2, TO_DESK, policy)
    [(_t, data)] = member.stamped(member.link("00000000-0000-4000-8000-000000000001", "NTB-00001",
                                              "sama", "diskominfotik:Sari", ["same_post"], 0.4))
    validate_data("ComplaintLinked", 1, data)
    with pytest.raises(InvalidEvent):
        validate_data("ComplaintLinked", 1, {**data, "because": ["same_psid"]})
    with pytest.raises(InvalidEvent):
        validate_data("ComplaintLinked", 1, {**data, "score": 1.5})
