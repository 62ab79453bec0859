"""Kubernetes API access for the handlers: get, list, server-side apply, delete, status patch, events.

Thin over the official client's ``ApiClient`` with the REST paths of the few kinds the operator
touches, so no API discovery is needed. Applies are server-side applies with the operator's field
manager, forced, so reconciling twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

#: The field manager of every server-side apply, and the component named in Events.
FIELD_MANAGER = "alert-filter-operator"
#: Timeout of one API request, s: a hung connection must not stall a handler forever.
REQUEST_TIMEOUT_S = 60
#: Longest Event message the operator posts, characters (the API server itself allows 1 KiB in
#: practice before it truncates in ``kubectl describe``).
EVENT_MESSAGE_MAX = 1024

log = logging.getLogger("alertfilter_operator.kube")


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the API: ``api_version`` (``v1`` or ``group/version``), plural, scope."""

    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        """The REST path of the collection, of one object, or of its subresource ``sub``."""
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        p = f"{base}/namespaces/{namespace}/{self.plural}" if self.namespaced and namespace else f"{base}/{self.plural}"
        if name:
            p += f"/{name}"
        if sub:
            p += f"/{sub}"
        return p


KINDS: dict[str, Kind] = {
    "ConfigMap": Kind("v1", "configmaps"),
    "Secret": Kind("v1", "secrets"),
    "Event": Kind("v1", "events"),
    "Namespace": Kind("v1", "namespaces", namespaced=False),
    "Node": Kind("v1", "nodes", namespaced=False),
    "Pod": Kind("v1", "pods"),
    "Deployment": Kind("apps/v1", "deployments"),
    "NetworkPolicy": Kind("networking.k8s.io/v1", "networkpolicies"),
    "KafkaTopic": Kind("kafka.strimzi.io/v1", "kafkatopics"),
    "KafkaUser": Kind("kafka.strimzi.io/v1", "kafkausers"),
    "Kafka": Kind("kafka.strimzi.io/v1", "kafkas"),
    "KafkaNodePool": Kind("kafka.strimzi.io/v1", "kafkanodepools"),
    "KafkaMirrorMaker2": Kind("kafka.strimzi.io/v1", "kafkamirrormaker2s"),
    "AlertFilter": Kind("alerts.lsst.io/v1alpha1", "alertfilters"),
    "FilterPool": Kind("alerts.lsst.io/v1alpha1", "filterpools", namespaced=False),
}


class Kube:
    """API calls the handlers need. Thread-safe (kopf runs sync handlers in a thread pool)."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None) -> None:
        """``api_client``: default, one from the in-cluster service account, else from ``$KUBECONFIG``.

        Raises:
            kubernetes.config.ConfigException: neither configuration is there.
        """
        if api_client is None:
            try:
                kubernetes.config.load_incluster_config()
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()
            api_client = kubernetes.client.ApiClient()
        self.api = api_client

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, Any]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One request; the decoded JSON answer, or None when the answer is empty.

        Raises:
            ApiException: the API server answered with an HTTP error status.
        """
        if body is not None and not content_type.endswith("json"):
            # apply-patch+yaml: JSON is YAML, sent as text. UTF-8 as it is: YAML refuses the
            # surrogate-pair escapes json.dumps writes for characters outside the basic plane.
            body = json.dumps(body, ensure_ascii=False).encode()
        m, url, headers, payload, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            body=body,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        resp = self.api.call_api(m, url, header_params=headers, body=payload, _request_timeout=REQUEST_TIMEOUT_S)
        resp.read()
        if resp.status >= 400:
            raise ApiException(http_resp=resp)
        return json.loads(resp.data) if resp.data else None

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return cast("dict[str, Any]", self.request("GET", KINDS[kind].path(namespace, name)))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Objects of ``kind`` (all namespaces when ``namespace`` is None), optionally by label selector."""
        query = [("labelSelector", label_selector)] if label_selector else []
        try:
            answer = self.request("GET", KINDS[kind].path(namespace), query=query)
        except ApiException as exc:
            if exc.status == 404:  # the CRD is not installed
                return []
            raise
        return cast("list[dict[str, Any]]", answer.get("items", []))

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``body`` (forced, field manager ``alert-filter-operator``); returns the live object."""
        kind = KINDS[body["kind"]]
        meta = body["metadata"]
        path = kind.path(meta.get("namespace"), meta["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        live = self.request("PATCH", path, body=body, query=query, content_type="application/apply-patch+yaml")
        return cast("dict[str, Any]", live)

    def delete(self, kind: str, name: str, namespace: str | None = None, uid: str | None = None) -> bool:
        """Delete; True when something was deleted, False when it was already gone (or, with
        ``uid``, when the object of that name is another one: a precondition the API server checks)."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", KINDS[kind].path(namespace, name), body=body)
        except ApiException as exc:
            if exc.status in (404, 409):  # 409: the uid precondition failed
                return False
            raise
        return True

    def patch_status(
        self, kind: str, name: str, namespace: str | None, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch ``status`` into the object's status subresource; None when the object is gone."""
        try:
            live = self.request(
                "PATCH",
                KINDS[kind].path(namespace, name, "status"),
                body={"status": status},
                content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast("dict[str, Any]", live)

    def post_event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record a Kubernetes Event about ``body`` (best effort: a failure is logged, never raised).

        ``type_`` is ``Normal`` or ``Warning``; ``message`` is cut to :data:`EVENT_MESSAGE_MAX`
        characters. Events of a cluster-scoped object go to the ``default`` namespace.
        """
        meta = body["metadata"]
        ns = meta.get("namespace") or "default"
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": ns},
            "involvedObject": {
                "apiVersion": body["apiVersion"],
                "kind": body["kind"],
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:EVENT_MESSAGE_MAX],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.request("POST", KINDS["Event"].path(ns), body=event)
        except Exception as exc:  # noqa: BLE001 - events are best effort: never fail a reconcile for one
            log.debug("could not post an event: %s", exc)


def owner_reference(body: dict[str, Any]) -> dict[str, Any]:
    """An ownerReference to ``body`` as the controlling owner (garbage collection deletes the child with it)."""
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
