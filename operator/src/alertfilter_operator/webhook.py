"""The validating admission webhook: ``kubectl apply`` of a filter whose source does not compile
fails at once, with the line and column."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kopf

from alertfilter.api import FilterSourceError, check_source, describe_missing, missing_imports, parse_source
from alertfilter.convert import SettingError
from alertfilter.positions import rfc3339_time, start_position

from .certs import make_webhook_certs


def validate_source(spec: kopf.Spec, old: kopf.Body | None = None, **_: Any) -> None:
    """Reject an AlertFilter whose ``spec.source`` fails :func:`alertfilter.check_source`, or, when
    it names no ``spec.image``, imports a module the runner image does not provide
    (:func:`alertfilter.api.missing_imports`: the image's module list ships with the runtime).

    The source is checked statically (compiled, never run), so no filter code runs in the operator.
    The imports are checked only when the source or the image changes: an update that touches
    neither (the operator's finalizer, a deletion) is never held by a module list that changed since.

    Raises:
        kopf.AdmissionError: ``spec.source: line L, column C: message`` (HTTP 422).
    """
    source = spec.get("source") or ""
    try:
        check_source(source, spec.get("entrypoint"))
    except FilterSourceError as exc:
        message = exc.message.replace("name one as the entrypoint", "name one in spec.entrypoint")
        raise kopf.AdmissionError(f"spec.source: line {exc.line}, column {exc.column}: {message}", code=422) from None
    old_spec = (old.get("spec") or {}) if old is not None else {}
    changed = old is None or old_spec.get("source") != source or old_spec.get("image") != spec.get("image")
    if spec.get("image") or not changed:
        return  # a custom image decides what it provides
    missing = missing_imports(parse_source(source.removeprefix("\ufeff")))
    if missing:
        ref = missing[0]
        more = f" (and {len(missing) - 1} more import(s) it lacks)" if len(missing) > 1 else ""
        raise kopf.AdmissionError(
            f"spec.source: line {ref.line}, column {ref.column}: {describe_missing(ref)}{more}; "
            "name an image built FROM the runner image that has it in spec.image",
            code=422,
        )


def local_webhook_server(port: int, cert_dir: Path) -> kopf.WebhookServer:
    """A webhook server on 127.0.0.1 announced by URL (development: the API server runs on this host)."""
    certs = make_webhook_certs(cert_dir, ["127.0.0.1", "localhost"])
    return kopf.WebhookServer(
        addr="127.0.0.1",
        port=port,
        host="127.0.0.1",
        certfile=str(certs.certfile),
        pkeyfile=str(certs.pkeyfile),
        cadata=certs.ca_pem,
    )


class ServiceWebhookServer(kopf.WebhookServer):
    """A webhook server on 0.0.0.0 announced to the API server as a Service (in-cluster), rather than
    a URL: the API server cannot resolve cluster DNS names."""

    def __init__(self, *, namespace: str, name: str, port: int, cert_dir: Path) -> None:
        """Serve on ``port`` of every interface with a certificate, written to ``cert_dir``, for the
        Service ``name`` in ``namespace`` (its cluster DNS names)."""
        host = f"{name}.{namespace}.svc"
        certs = make_webhook_certs(cert_dir, [host, f"{host}.cluster.local", name])
        super().__init__(
            addr="0.0.0.0",
            port=port,
            host=host,
            certfile=str(certs.certfile),
            pkeyfile=str(certs.pkeyfile),
            cadata=certs.ca_pem,
        )
        self._service = {"namespace": namespace, "name": name, "port": port}

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        """kopf's server, each client config it yields rewritten from a URL to the Service (same path)."""
        async for config in super().__call__(fn):
            url = config.get("url") or ""
            path = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else None
            service: dict[str, Any] = dict(self._service)
            if path:
                service["path"] = path
            yield kopf.WebhookClientConfig(caBundle=config.get("caBundle"), service=service)  # type: ignore[typeddict-item]


async def no_webhook_server(fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
    """The webhook switched off (``ALERTFILTER_OPERATOR_WEBHOOK=off``): a server that never serves.

    kopf refuses to run admission handlers without a server; this one announces no endpoint, so
    no webhook configuration is written and the source is checked by the reconciler alone (its
    ``SourceValid`` condition), as before the webhook existed.
    """
    await asyncio.Event().wait()  # until the operator stops: kopf cancels this task then
    yield kopf.WebhookClientConfig()  # pragma: no cover - never reached; makes this an async generator


def validate_positions(spec: kopf.Spec, **_: Any) -> None:
    """Reject a ``spec.startFrom`` or ``spec.replayFrom`` the runner cannot use. The CRD's rules
    check the form; this checks the calendar too (no 30 February), as the runner will.

    Raises:
        kopf.AdmissionError: ``spec.startFrom: must be ...`` (HTTP 422).
    """
    checks = (
        ("startFrom", start_position, "latest, earliest or an RFC 3339 time"),
        ("replayFrom", rfc3339_time, "an RFC 3339 time"),
    )
    for name, convert, expected in checks:
        value = spec.get(name)
        if value is None:
            continue
        try:
            convert(str(value))
        except SettingError:
            raise kopf.AdmissionError(
                f"spec.{name}: must be {expected} such as 2026-06-01T00:00:00Z, got {value!r}", code=422
            ) from None
