"""Kubernetes API access for the handlers: get, list, server-side apply, delete, status patch.

Thin over the official client's ``ApiClient`` with the REST paths of the few kinds the operator
touches, so no API discovery is needed. Applies are server-side applies with the operator's field
manager, forced, so reconciling twice changes nothing.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

FIELD_MANAGER = "alert-filter-operator"


@dataclass(frozen=True)
class Kind:
    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
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
        if api_client is None:
            try:
                kubernetes.config.load_incluster_config()
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()
            api_client = kubernetes.client.ApiClient()
        self.api = api_client
        self._local = threading.local()

    def _call(self, method: str, path: str, body: Any = None, query: list[tuple[str, Any]] | None = None,
              content_type: str = "application/json") -> Any:
        """One request. Raises ApiException for an HTTP error status."""
        if body is not None and not content_type.endswith("json"):
            body = json.dumps(body)  # apply-patch+yaml: JSON is YAML, sent as text
        m, url, headers, payload, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=query or [], body=body,
            header_params={"Content-Type": content_type, "Accept": "application/json"}, auth_settings=["BearerToken"])
        resp = self.api.call_api(m, url, header_params=headers, body=payload, _request_timeout=60)
        resp.read()
        if resp.status >= 400:
            raise ApiException(http_resp=resp)
        return json.loads(resp.data) if resp.data else None

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self._call("GET", KINDS[kind].path(namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Objects of ``kind`` (all namespaces when ``namespace`` is None), optionally by label selector."""
        query = [("labelSelector", label_selector)] if label_selector else []
        try:
            return self._call("GET", KINDS[kind].path(namespace), query=query).get("items", [])
        except ApiException as exc:
            if exc.status == 404:  # the CRD is not installed
                return []
            raise

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``body`` (forced, field manager ``alert-filter-operator``); returns the live object."""
        kind = KINDS[body["kind"]]
        meta = body["metadata"]
        path = kind.path(meta.get("namespace"), meta["name"])
        return self._call("PATCH", path, body=body, query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                          content_type="application/apply-patch+yaml")

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete; True when something was deleted, False when it was already gone."""
        try:
            self._call("DELETE", KINDS[kind].path(namespace, name), body={"propagationPolicy": "Background"})
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def patch_status(self, kind: str, name: str, namespace: str | None, status: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch ``status`` into the object's status subresource; None when the object is gone."""
        try:
            return self._call("PATCH", KINDS[kind].path(namespace, name, "status"), body={"status": status},
                              content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


def post_event(kube: "Kube", body: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """Record a Kubernetes Event about ``body`` (best effort: a failure is logged, never raised)."""
    import datetime as dt
    import logging
    import uuid

    meta = body["metadata"]
    ns = meta.get("namespace") or "default"
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": ns},
        "involvedObject": {"apiVersion": body["apiVersion"], "kind": body["kind"], "name": meta["name"],
                           "namespace": meta.get("namespace"), "uid": meta.get("uid")},
        "type": type_, "reason": reason, "message": message[:1024],
        "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }
    try:
        kube._call("POST", KINDS["Event"].path(ns), body=event)
    except Exception as exc:  # noqa: BLE001 - events are best effort
        logging.getLogger("alertfilter_operator").debug("could not post an event: %s", exc)


def owner_reference(body: dict[str, Any]) -> dict[str, Any]:
    """An ownerReference to ``body`` as the controlling owner (garbage collection deletes the child with it)."""
    return {"apiVersion": body["apiVersion"], "kind": body["kind"], "name": body["metadata"]["name"],
            "uid": body["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
