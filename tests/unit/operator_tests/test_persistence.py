"""kopf's record of the last handled spec keeps the source's hash, not the source (issue #12: a
large source pushed the object's annotations past 256 KiB and wedged the finalizer)."""

from __future__ import annotations

import hashlib

import kopf

from alertfilter_operator.persistence import HashedSourceDiffBase


def test_the_recorded_spec_holds_the_source_s_hash_and_still_tells_a_change() -> None:
    storage = HashedSourceDiffBase(prefix="alerts.lsst.io", key="last-handled-configuration")
    source = "def f(alert):\n    return True  # \U0001f52d\n" + "#" * 200_000

    def essence(src: str) -> dict:  # type: ignore[type-arg]
        body = kopf.Body({"metadata": {"name": "f"}, "spec": {"source": src, "replicas": 1}})
        return dict(storage.build(body=body))

    recorded = essence(source)
    assert recorded["spec"]["source"] == "sha256:" + hashlib.sha256(source.encode()).hexdigest()
    assert recorded["spec"]["replicas"] == 1
    assert len(str(recorded)) < 1000
    assert essence(source + " ") != recorded
