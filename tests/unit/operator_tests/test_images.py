"""A filter's own image (spec.image), the pool's allowedImages, and the webhook's refusal of an import
the runner image lacks (issue #15, a scientific runtime)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import kopf
import pytest

from alertfilter_operator import alertfilters
from alertfilter_operator.admission import validate_image
from alertfilter_operator.builders import build_deployment
from alertfilter_operator.config import OperatorConfig
from alertfilter_operator.images import image_allowed, image_problem
from alertfilter_operator.models import AlertFilterSpec, FilterPoolSpec
from alertfilter_operator.state import State
from alertfilter_operator.webhook import validate_source

from .conftest import SOURCE, filter_ref, pool_body, pool_spec
from .fake_kube import FakeKube

LOG = logging.getLogger("test")
RUNNER = "runner:test"
GROUP_IMAGE = "registry.example.org/broker-images/snlc-runner:1.0"
PANDAS = "import math\n\nimport pandas as pd\n\ndef f(alert):\n    return True\n"


def _spec(spec: dict[str, Any]) -> kopf.Spec:
    return kopf.Body({"spec": spec}).spec


def _body(spec: dict[str, Any], status: dict[str, Any] | None = None) -> kopf.Body:
    return kopf.Body({"metadata": {"name": "x", "namespace": "science"}, "spec": spec, "status": status or {}})


# --- the webhook: imports the runner image lacks -----------------------------------------------------
def test_an_import_the_runner_image_lacks_is_refused_with_its_line_and_column() -> None:
    with pytest.raises(kopf.AdmissionError) as err:
        validate_source(spec=_spec({"source": PANDAS}))
    assert err.value.code == 422
    message = str(err.value)
    assert message.startswith("spec.source: line 3, column 1: module 'pandas' is not in the runner image")
    assert "spec.image" in message


def test_an_import_inside_the_filter_function_is_refused_too() -> None:
    source = "def f(alert):\n    from sklearn import svm\n    import torch.nn\n    return True\n"
    with pytest.raises(kopf.AdmissionError, match=r"line 3, column 5: module 'torch'"):
        validate_source(spec=_spec({"source": source}))


def test_the_science_packages_and_the_standard_library_are_accepted() -> None:
    source = (
        "import json, math\nimport numpy as np\nimport light_curve as lc\nfrom astropy.time import Time\n"
        "import scipy.stats\nfrom sklearn.ensemble import IsolationForest\n\ndef f(alert):\n    return True\n"
    )
    validate_source(spec=_spec({"source": source}))


def test_with_its_own_image_the_image_decides_what_it_provides() -> None:
    validate_source(spec=_spec({"source": PANDAS, "image": GROUP_IMAGE}))


def test_removing_the_image_brings_the_check_back() -> None:
    old = _body({"source": PANDAS, "image": GROUP_IMAGE})
    with pytest.raises(kopf.AdmissionError, match="module 'pandas'"):
        validate_source(spec=_spec({"source": PANDAS}), old=old)


def test_an_update_that_changes_neither_source_nor_image_is_never_held_by_the_module_list() -> None:
    # a filter admitted under an older list (or with the webhook off) keeps its finalizer and deletion
    old = _body({"source": PANDAS})
    validate_source(spec=_spec({"source": PANDAS, "suspend": True}), old=old)


def test_a_source_error_still_comes_first() -> None:
    with pytest.raises(kopf.AdmissionError, match="syntax error"):
        validate_source(spec=_spec({"source": "import pandas\ndef f(alert:\n"}))


# --- the pool's allowedImages ------------------------------------------------------------------------
def test_the_rule() -> None:
    assert image_allowed("anything:1", None, RUNNER)
    assert image_allowed(RUNNER, [], RUNNER)
    assert not image_allowed("anything:1", [], RUNNER)
    assert image_allowed(GROUP_IMAGE, ["registry.example.org/broker-images/"], RUNNER)
    assert not image_allowed(
        "registry.example.org/broker-images-evil/x:1", ["registry.example.org/broker-images/"], RUNNER
    )
    assert image_problem(None, "pool-a", [], RUNNER) is None
    problem = image_problem("docker.io/evil/x:1", "pool-a", ["registry.example.org/broker-images/"], RUNNER) or ""
    assert problem.startswith("spec.image: 'docker.io/evil/x:1' is not allowed in FilterPool 'pool-a'")
    assert "'registry.example.org/broker-images/'" in problem


def test_the_models_take_the_fields_and_refuse_what_is_no_image_reference() -> None:
    spec = AlertFilterSpec.model_validate({"source": SOURCE, "image": GROUP_IMAGE})
    assert spec.image == GROUP_IMAGE
    assert pool_spec(allowedImages=["registry.example.org/"]).allowedImages == ["registry.example.org/"]
    for bad in ("has space:1", "-leading", ""):
        with pytest.raises(ValueError, match="image"):
            AlertFilterSpec.model_validate({"source": SOURCE, "image": bad})
    with pytest.raises(ValueError, match="allowedImages"):
        FilterPoolSpec.model_validate({**pool_spec().model_dump(by_alias=True), "allowedImages": ["a b"]})


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube(
        [
            pool_body("pool-a", allowedImages=["registry.example.org/broker-images/"]),
            pool_body("pool-b", allowedImages=[]),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kafka-a"}},
        ]
    )


@pytest.fixture
def memo(kube: FakeKube) -> kopf.Memo:
    m = kopf.Memo()
    m.state = State(kube, OperatorConfig(runner_image=RUNNER))
    return m


def _check(memo: kopf.Memo, spec: dict[str, Any], old: kopf.Body | None = None) -> None:
    validate_image(spec=_body(spec).spec, name="x", namespace="science", memo=memo, old=old)


def test_an_image_the_named_pool_does_not_allow_is_refused_at_apply(memo: kopf.Memo) -> None:
    _check(memo, {"source": SOURCE, "pool": "pool-a", "image": GROUP_IMAGE})
    with pytest.raises(kopf.AdmissionError) as err:
        _check(memo, {"source": SOURCE, "pool": "pool-a", "image": "docker.io/evil/x:1"})
    assert err.value.code == 422
    assert "spec.image: 'docker.io/evil/x:1' is not allowed in FilterPool 'pool-a'" in str(err.value)
    with pytest.raises(kopf.AdmissionError, match=r"spec\.allowedImages is empty"):
        _check(memo, {"source": SOURCE, "pool": "pool-b", "image": GROUP_IMAGE})
    _check(memo, {"source": SOURCE, "pool": "pool-b", "image": RUNNER})  # the operator's own image: always
    _check(memo, {"source": SOURCE, "pool": "pool-b"})  # no image: nothing to check


def test_without_a_pool_some_pool_must_allow_the_image(memo: kopf.Memo) -> None:
    _check(memo, {"source": SOURCE, "image": GROUP_IMAGE})  # pool-a allows it: the operator places it there
    with pytest.raises(kopf.AdmissionError, match="allowed in no FilterPool"):
        _check(memo, {"source": SOURCE, "image": "docker.io/evil/x:1"})


def test_a_placed_filter_is_checked_against_its_pool(memo: kopf.Memo) -> None:
    old = _body({"source": SOURCE}, {"pool": "pool-b"})
    with pytest.raises(kopf.AdmissionError, match="FilterPool 'pool-b'"):
        _check(memo, {"source": SOURCE, "image": GROUP_IMAGE}, old=old)
    # an update that keeps the image and the pool is let through (finalizers, deletion)
    _check(
        memo,
        {"source": SOURCE, "image": GROUP_IMAGE, "suspend": True},
        old=_body({"source": SOURCE, "image": GROUP_IMAGE}, {"pool": "pool-b"}),
    )


# --- the runner Deployment and status ----------------------------------------------------------------
def test_the_deployment_runs_the_image_it_is_given(pool: Any) -> None:
    dep = build_deployment(filter_ref(image=GROUP_IMAGE), pool, GROUP_IMAGE)
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == GROUP_IMAGE and container["args"] == ["run"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def _filter(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "AlertFilter",
        "metadata": {"name": "lc", "namespace": "sci", "uid": "uid-lc", "generation": 1},
        "spec": {"source": SOURCE, **spec},
    }


def _with_password(kube: FakeKube) -> None:
    kube.put({"apiVersion": "v1", "kind": "Secret", "data": {"password": base64.b64encode(b"pw").decode()},
              "metadata": {"name": "af.sci.lc", "namespace": "kafka-a"}})  # fmt: skip


def test_the_reconciler_runs_spec_image_and_records_it(kube: FakeKube, memo: kopf.Memo) -> None:
    state: State = memo.state
    _with_password(kube)
    kube.put(_filter(image=GROUP_IMAGE))
    alertfilters.reconcile(state, _filter(image=GROUP_IMAGE), LOG, {})
    dep = kube.find("Deployment", "af-lc", "sci") or {}
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == GROUP_IMAGE
    af = kube.find("AlertFilter", "lc", "sci") or {}
    assert af["status"]["image"] == GROUP_IMAGE and af["status"]["pool"] == "pool-a"  # the pool that allows it


def test_without_spec_image_the_status_names_the_runner_image(kube: FakeKube, memo: kopf.Memo) -> None:
    _with_password(kube)
    kube.put(_filter(pool="pool-b"))
    alertfilters.reconcile(memo.state, _filter(pool="pool-b"), LOG, {})
    assert (kube.find("AlertFilter", "lc", "sci") or {})["status"]["image"] == RUNNER


def test_an_image_its_pool_no_longer_allows_stops_the_runner(kube: FakeKube, memo: kopf.Memo) -> None:
    _with_password(kube)
    kube.put(_filter(image=GROUP_IMAGE, pool="pool-a"))
    alertfilters.reconcile(memo.state, _filter(image=GROUP_IMAGE, pool="pool-a"), LOG, {})
    assert kube.find("Deployment", "af-lc", "sci") is not None
    kube.put(pool_body("pool-a", allowedImages=["registry.example.org/other/"]))  # the pool's operators changed it
    with pytest.raises(kopf.TemporaryError, match=r"not allowed in FilterPool 'pool-a'"):
        alertfilters.reconcile(memo.state, _filter(image=GROUP_IMAGE, pool="pool-a"), LOG, {})
    assert kube.find("Deployment", "af-lc", "sci") is None
    conditions = {c["type"]: c for c in (kube.find("AlertFilter", "lc", "sci") or {})["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False" and conditions["Ready"]["reason"] == "ImageNotAllowed"
    assert conditions["RunnerReady"]["reason"] == "ImageNotAllowed"
