"""Which stream a filter reads, from its source (the operator's choice): the lean stream only when
the fields it reads are known and hold no cutout."""

from __future__ import annotations

import pytest

from alertfilter.routing import declared_fields, route

VISIT, ID = "diaSource.visit", "diaSourceId"


def test_a_diasource_cut_reads_the_lean_stream():
    src = "def bright(alert):\n    return alert['diaSource']['psfFlux'] > 1000\n"
    r = route(src, "bright", VISIT, ID)
    assert r.lean and "inferred fields include no cutout" in r.why
    assert r.fields == frozenset({"diaSource", "diaSourceId"})


def test_a_light_curve_filter_reads_the_lean_stream():
    src = "def lc(alert):\n    return len(alert.history('prvDiaSources', 'psfFlux')) > 3\n"
    assert route(src, "lc", VISIT, ID).lean


@pytest.mark.parametrize(
    "src",
    [
        "def f(alert):\n    return alert['cutoutScience'] is not None\n",
        "def f(alert):\n    return alert.get('cutoutTemplate') is not None\n",
        "def f(alert):\n    return bool(alert)\n",  # the whole alert: unknown
        "def f(alert):\n    return getattr(alert, 'get')('x')\n",
    ],
)
def test_a_filter_that_reads_a_cutout_or_cannot_be_inferred_reads_the_full_stream(src):
    r = route(src, "f", VISIT, ID)
    assert not r.lean and "the full stream" in r.why


def test_declared_fields_win_and_must_be_a_literal_touched_nowhere_else():
    cls = "from alertfilter import AlertFilter\nclass F(AlertFilter):\n    fields = {}\n    def filter(self, alert):\n        return bool(alert)\n"
    assert route(cls.format('["diaSource"]'), "F", VISIT, ID).lean  # declared: the whole-alert use does not matter
    assert not route(cls.format('["diaSource", "cutoutDifference"]'), "F", VISIT, ID).lean
    assert declared_fields(cls.format("list(NAMES)"), "F") is None
    touched = cls.format('["diaSource"]') + "F.fields.append('cutoutScience')\n"
    assert declared_fields(touched, "F") is None and not route(touched, "F", VISIT, ID).lean
    fn = "def f(alert):\n    return bool(alert)\nf.fields = ('diaSource',)\n"
    assert declared_fields(fn, "f") == {"diaSource"} and route(fn, "f", VISIT, ID).lean


def test_forcing_the_full_stream_or_an_unknown_entrypoint_reads_the_full_stream():
    src = "def f(alert):\n    return alert['diaSource'] is not None\n"
    assert not route(src, "f", VISIT, ID, forced_full=True).lean
    assert route(src, "f", VISIT, ID, forced_full=True).why == "spec.stream is full"
    assert not route(src, None, VISIT, ID).lean
    assert not route(src, "f", "cutoutScience.visit", ID).lean  # the visit field read from a cutout
