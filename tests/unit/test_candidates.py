"""Candidate records: the input message travels to the cap stage whole (value, key, headers) and
comes back out of it as it was."""

from __future__ import annotations

import pytest

from alertfilter.candidates import (
    H_KEY,
    candidate_headers,
    cap_group,
    parse_candidate,
    visit_key,
)

from .kafka_fakes import Msg


def roundtrip(m: Msg, visit: object, alert_id: object = None):
    cand = Msg(0, m.value(), 2, "cands", candidate_headers(m, alert_id), visit_key(visit))  # type: ignore[arg-type]
    return parse_candidate(cand)


def test_the_source_message_comes_back_whole() -> None:
    headers = [
        ("origin", b"x"),
        ("empty", None),
        ("Alertfilter.visit", b"forged"),
        ("alertfilter.candidate.offset", b"9"),
    ]
    m = Msg(41, b"value", 3, "alerts", headers, key=b"k1")  # type: ignore[arg-type]
    c = roundtrip(m, 1234, 99)
    assert (c.visit, c.source, c.alert_id) == (1234, ("alerts", 3, 41), "99")
    s = c.message
    assert (s.topic(), s.partition(), s.offset(), s.value(), s.key()) == ("alerts", 3, 41, b"value", b"k1")
    assert s.headers() == [("origin", b"x"), ("empty", None)]  # alertfilter.* never passes the runner
    assert s.error() is None


def test_keys_none_and_empty_differ_and_visits_keep_their_type() -> None:
    assert roundtrip(Msg(1, b"v", key=None), "12").message.key() is None
    assert roundtrip(Msg(1, b"v", key=b""), "12").message.key() == b""
    assert roundtrip(Msg(1, b"v"), "12").visit == "12" and roundtrip(Msg(1, b"v"), 12).visit == 12
    assert visit_key(12) != visit_key("12") and visit_key("é") == '"é"'.encode()
    assert (H_KEY, b"") in candidate_headers(Msg(1, b"v", key=b""), None)


@pytest.mark.parametrize(
    ("key", "headers"),
    [
        (None, []),
        (b"not json", []),
        (b"true", []),
        (b"1.5", []),
        (b"12", []),
        (b"12", [("alertfilter.candidate.topic", b"t"), ("alertfilter.candidate.partition", b"x")]),
    ],
)
def test_what_is_not_a_candidate_is_refused(key: bytes | None, headers: list[tuple[str, bytes]]) -> None:
    with pytest.raises(ValueError, match=r"key|header"):
        parse_candidate(Msg(0, b"v", headers=headers, key=key))


def test_a_candidate_carries_the_replay_request_its_input_was_read_under() -> None:
    m = Msg(1, b"v")
    assert roundtrip(m, 1).generation == 0
    cand = Msg(0, b"v", 0, "cands", candidate_headers(m, None, 7), visit_key(1))  # type: ignore[arg-type]
    assert parse_candidate(cand).generation == 7


def test_the_cap_stage_group_follows_the_filter_group() -> None:
    assert cap_group("alertfilter.ns.f.uid") == "alertfilter.ns.f.uid.cap"
