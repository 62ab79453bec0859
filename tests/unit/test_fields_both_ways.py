"""Field inference is conservative: on the simulated alerts every example and test filter gives
the same verdicts with the runner's decoding (projected when its reads are known) as with every
field decoded, and ``alertfilter check`` gives the runner's answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertfilter.projection import infer_fields
from alertfilter.tools import check

from .both_ways import DOUBTFUL, ROOT, filter_sources, verdicts

SIM = sorted((ROOT / "tests" / "data").glob("*.avro"))
SOURCES = filter_sources()


@pytest.mark.parametrize("name", sorted(SOURCES))
@pytest.mark.parametrize("path", SIM, ids=[p.name for p in SIM])
def test_projected_and_full_decoding_give_the_same_verdicts(name: str, path: Path) -> None:
    projected, _ = verdicts(SOURCES[name], path, projected=True)
    full, _ = verdicts(SOURCES[name], path, projected=False)
    assert projected == full


def test_the_examples_are_still_projected() -> None:
    """Conservative, not useless: the plain examples keep their fast, projected decoding."""
    src = (ROOT / "examples" / "filters" / "reliable_i_band.py").read_text()
    assert verdicts(src, SIM[-1], projected=True)[1]


@pytest.mark.parametrize("name", sorted(DOUBTFUL))
def test_any_doubt_decodes_everything(name: str) -> None:
    src = DOUBTFUL[name]
    entry = "F" if "class F" in src else "f"
    assert infer_fields(src, entry) is None


@pytest.mark.parametrize("name", sorted(DOUBTFUL))
def test_check_answers_as_the_runner_does(name: str) -> None:
    sim = ROOT / "tests" / "data" / "sim-lsst-alert-12.avro"
    runner_way, _ = verdicts(DOUBTFUL[name], sim, projected=True)
    res = check(DOUBTFUL[name], [sim], max_per_visit=None, visit_field="diaSource.ccdVisitId", id_field="alertId")
    assert res.accepted_ids == [i for kind, _, i in runner_way if kind == "accepted"]
    assert res.errors == sum(kind == "error" for kind, _, _ in runner_way)
