"""The admission side of the contract (:mod:`.contract`): ``kubectl apply`` of a filter that would
take another's topic, an input or internal topic, or move out of the pool it runs in, is refused
with the reason. The reconciler applies the same rules again, for filters admitted without it."""

from __future__ import annotations

from typing import Any

import kopf

from .contract import claims_of, output_topic_problem, pool_change_problem
from .state import State


def validate_contract(
    spec: kopf.Spec,
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    old: kopf.Body | None = None,
    **_: Any,
) -> None:
    """Refuse an AlertFilter whose output topic or pool it may not have.

    Lists every AlertFilter, FilterPool and Namespace once per request (admission is rare; the
    reconciler's checks cost a labelled list instead).

    Raises:
        kopf.AdmissionError: ``spec.output.topic: ...`` or ``spec.pool: ...`` (HTTP 422).
    """
    state: State | None = memo.get("state")
    if state is None or not namespace or not name:
        return  # not started yet: the reconciler checks the same
    kube = state.kube
    claims = claims_of(
        kube.list("AlertFilter"),
        kube.list("FilterPool"),
        [n["metadata"]["name"] for n in kube.list("Namespace")],
        exclude=(namespace, name),
    )
    problem = output_topic_problem(namespace, name, dict(spec), claims)
    if problem is None and old:
        old_pool = (old.get("spec") or {}).get("pool")
        problem = pool_change_problem(old_pool, spec.get("pool"), (old.get("status") or {}).get("pool"))
    if problem:
        raise kopf.AdmissionError(problem, code=422)
