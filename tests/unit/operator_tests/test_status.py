"""One status writer for AlertFilters and FilterPools: what `kubectl describe` shows after it writes."""

from __future__ import annotations

from typing import Any

from alertfilter_operator.conditions import FALSE, TRUE
from alertfilter_operator.status import StatusUpdate

from .fake_kube import FakeKube

FILTER = {
    "apiVersion": "alerts.lsst.io/v1alpha1",
    "kind": "AlertFilter",
    "metadata": {"name": "f", "namespace": "sci", "uid": "u1", "generation": 3},
    "spec": {"source": "def f(a): return True"},
}
POOL = {
    "apiVersion": "alerts.lsst.io/v1alpha1",
    "kind": "FilterPool",
    "metadata": {"name": "p", "uid": "u2", "generation": 1},
    "spec": {},
}


def _status_patches(kube: FakeKube) -> list[tuple[str, Any]]:
    return [(path, body) for method, path, body in kube.calls if method == "PATCH" and path.endswith("/status")]


def test_a_transition_posts_an_event_and_the_status_is_written_once() -> None:
    kube = FakeKube([FILTER])
    st = StatusUpdate(kube, kube.find("AlertFilter", "f", "sci") or {})
    st.set("SourceValid", FALSE, "SourceError", "line 2, column 5: invalid syntax")
    st.set("SourceValid", FALSE, "SourceError", "line 2, column 5: invalid syntax")  # no second event
    st.fields["sourceHash"] = "ab"
    st.set_ready(["SourceValid"], "ok")
    st.write()
    (ev1, ev2) = kube.events()
    assert (ev1["type"], ev1["reason"], ev1["message"]) == (
        "Warning",
        "SourceError",
        "SourceValid=False: line 2, column 5: invalid syntax",
    )
    assert ev1["involvedObject"] == {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "AlertFilter",
        "name": "f",
        "namespace": "sci",
        "uid": "u1",
    }
    assert ev2["message"] == "Ready=False: SourceValid is False: line 2, column 5: invalid syntax"
    ((path, body),) = _status_patches(kube)
    assert path == "/apis/alerts.lsst.io/v1alpha1/namespaces/sci/alertfilters/f/status"
    status = body["status"]
    assert status["observedGeneration"] == 3 and status["sourceHash"] == "ab"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"SourceValid": FALSE, "Ready": FALSE}
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])


def test_an_unchanged_status_is_not_written_again() -> None:
    kube = FakeKube([FILTER])
    first = StatusUpdate(kube, kube.find("AlertFilter", "f", "sci") or {})
    first.set("Ready", TRUE, "Ready", "ok")
    first.fields["pool"] = "a"
    first.write()
    again = StatusUpdate(kube, kube.find("AlertFilter", "f", "sci") or {})
    again.set("Ready", TRUE, "Ready", "ok")
    again.fields["pool"] = "a"
    again.write()
    assert len(_status_patches(kube)) == 1 and len(kube.events()) == 1


def test_a_cluster_scoped_pool_gets_the_same_writer() -> None:
    kube = FakeKube([POOL])
    st = StatusUpdate(kube, kube.find("FilterPool", "p") or {})
    st.set("KafkaReady", TRUE, "Ready", "")
    st.set("MirrorReady", FALSE, "NotReady", "connector failed")
    st.set_ready(["KafkaReady", "MirrorReady"], "ready")
    st.fields.update(capacity=100, used=3, free=97)
    st.write()
    ((path, body),) = _status_patches(kube)
    assert path == "/apis/alerts.lsst.io/v1alpha1/filterpools/p/status"
    ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["message"]) == (FALSE, "MirrorReady is False: connector failed")
    assert body["status"]["free"] == 97
    # events of a cluster-scoped object go to the default namespace
    assert {e["metadata"]["namespace"] for e in kube.events()} == {"default"}
