"""A :class:`Kube` whose transport is a dict of objects: the real get/list/apply/delete/status/event
code paths run, no API server is needed."""

from __future__ import annotations

import copy
from typing import Any, cast

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from alertfilter_operator.kube import Kube


def _parse(path: str) -> tuple[str, str, str | None, str | None]:
    """(plural, namespace or "", name, subresource) of a REST path as :class:`Kind` makes them."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    ns = ""
    if rest[0] == "namespaces" and len(rest) > 2:
        ns, rest = rest[1], rest[2:]
    return rest[0], ns, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None


class _FakeApiClient:
    closed = False

    def close(self) -> None:
        self.closed = True


class FakeKube(Kube):
    """Objects keyed by (plural, namespace or "", name); every request is recorded in ``calls``."""

    def __init__(self, objects: list[dict[str, Any]] | None = None) -> None:  # no API client: no super()
        self.fake_api = _FakeApiClient()
        self.api = cast(ApiClient, self.fake_api)  # only close() is called on it
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        for obj in objects or []:
            self.put(obj)

    @staticmethod
    def plural(kind: str) -> str:
        return "networkpolicies" if kind == "NetworkPolicy" else kind.lower() + "s"

    def put(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(self.plural(obj["kind"]), meta.get("namespace") or "", meta["name"])] = copy.deepcopy(obj)

    def find(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.objects.get((self.plural(kind), namespace or "", name))

    def events(self) -> list[dict[str, Any]]:
        return [body for method, path, body in self.calls if method == "POST" and path.endswith("/events")]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, Any]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        self.calls.append((method, path, body))
        plural, ns, name, sub = _parse(path)
        if plural == "events":
            return body
        key = (plural, ns, name or "")
        if method == "GET" and name is None:
            selector = dict(q[1].split("=", 1) for q in query or [] if q[0] == "labelSelector")
            items = [
                o
                for (p, n, _), o in self.objects.items()
                if p == plural
                and (not ns or n == ns)
                and selector.items() <= (o["metadata"].get("labels") or {}).items()
            ]
            return {"items": copy.deepcopy(items)}
        if method == "PATCH" and sub is None:  # server-side apply: the applied object is the live one
            self.objects[key] = copy.deepcopy(body)
            return body
        if key not in self.objects:
            raise ApiException(status=404)
        if method == "GET":
            return copy.deepcopy(self.objects[key])
        if method == "DELETE":
            want = ((body or {}).get("preconditions") or {}).get("uid")
            if want and self.objects[key]["metadata"].get("uid") != want:
                raise ApiException(status=409)  # as the API server answers a failed precondition
            del self.objects[key]
            return {}
        if method == "PATCH" and sub == "status":
            live = self.objects[key]
            live["status"] = {**(live.get("status") or {}), **body["status"]}
            return copy.deepcopy(live)
        raise AssertionError(f"unexpected {method} {path}")
