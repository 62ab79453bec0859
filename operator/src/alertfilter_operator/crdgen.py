"""Generate ``crds/*.yaml`` from the typed models in ``models.py``.

``python -m alertfilter_operator.crdgen [OUT_DIR]`` writes the CRDs; ``--check`` exits 1 when
the files in OUT_DIR differ from what the models give (the test suite runs it).

The conversion from pydantic's JSON Schema to a Kubernetes *structural* schema inlines ``$ref``s,
turns ``anyOf [X, null]`` into ``X`` with ``nullable: true``, numeric ``exclusiveMinimum`` into
OpenAPI v3.0's boolean form, drops ``title`` and ``additionalProperties: false`` (not allowed in
structural schemas), and gives object fields built by a default factory ``default: {}`` so the
API server fills in their nested defaults.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import BaseModel

from . import GROUP, VERSION
from .models import DNS_LABEL, FILTER_NAME_MAX, AlertFilterSpec, AlertFilterStatus, FilterPoolSpec, FilterPoolStatus

KEEP = {
    "type",
    "description",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "enum",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "nullable",
    "format",
    "exclusiveMinimum",
    "exclusiveMaximum",
}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        merged = {**_structural(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [o for o in node.pop(key) if o.get("type") != "null"]
            nullable = len(options) < len(node.get(key, [])) or True
            if len(options) != 1:
                raise ValueError(f"cannot express {key} of {len(options)} options structurally: {options}")
            inner = _structural(options[0], defs)
            node = {**inner, **{k: v for k, v in node.items() if k != "title"}, "nullable": nullable}
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k.startswith("x-kubernetes-"):
            out[k] = v
        elif k not in KEEP:
            continue
        elif k == "properties":
            out[k] = {name: _structural(p, defs) for name, p in v.items()}
        elif k == "items":
            out[k] = _structural(v, defs)
        elif k == "additionalProperties":
            if isinstance(v, dict):
                out[k] = _structural(v, defs)
        elif k == "exclusiveMinimum" and not isinstance(v, bool):
            out["minimum"], out["exclusiveMinimum"] = v, True
        elif k == "exclusiveMaximum" and not isinstance(v, bool):
            out["maximum"], out["exclusiveMaximum"] = v, True
        else:
            out[k] = v
    if "properties" in out:
        out.setdefault("type", "object")
    if out.get("nullable") and "default" in out and out["default"] is None:
        del out["default"]
    return out


def _object_defaults(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Give fields built by a default factory their default object, recursively."""
    for name, f in model.model_fields.items():
        key = f.alias or name
        prop = schema.get("properties", {}).get(key)
        if prop is None:
            continue
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if f.default_factory is not None:
                # the whole default object, so that CEL rules validating the default see its fields
                # pydantic types the factory as taking the validated data or nothing; ours take nothing
                factory = cast("Callable[[], BaseModel]", f.default_factory)
                prop["default"] = factory().model_dump(mode="json", by_alias=True, exclude_none=True)
            _object_defaults(ann, prop)
        elif f.default_factory is not None and prop.get("type") == "array":
            prop["default"] = []


def model_schema(model: type[BaseModel], description: str) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model``."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _structural(raw, raw.get("$defs", {}))
    _object_defaults(model, schema)
    schema["description"] = description
    return schema


def _crd(
    kind: str,
    plural: str,
    short: list[str],
    scope: str,
    spec: dict[str, Any],
    status: dict[str, Any],
    columns: list[dict[str, Any]],
    doc: str,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    status = dict(status)
    status.setdefault("properties", {})["kopf"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "description": "Bookkeeping of the operator framework (kopf).",
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {
                "app.kubernetes.io/name": "alert-filter-operator",
                "app.kubernetes.io/part-of": "alert-filter-operator",
            },
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
                "categories": ["alerts"],
            },
            "scope": scope,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": doc,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "APIVersion of this object."},
                                "kind": {"type": "string", "description": "Kind of this object."},
                                "metadata": metadata or {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def _ready_column() -> dict[str, Any]:
    return {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Whether the resource is fully reconciled and working.",
    }


def crds() -> dict[str, dict[str, Any]]:
    """``{file name: CRD manifest}`` for every custom resource of the operator."""
    age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    alertfilter = _crd(
        "AlertFilter",
        "alertfilters",
        ["af"],
        "Namespaced",
        model_schema(AlertFilterSpec, "The filter: its Python source and how to run it."),
        model_schema(AlertFilterStatus, "What the operator observed and did."),
        [
            _ready_column(),
            {
                "name": "Pool",
                "type": "string",
                "jsonPath": ".status.pool",
                "description": "FilterPool the filter runs in.",
            },
            {
                "name": "Topic",
                "type": "string",
                "jsonPath": ".status.outputTopic",
                "description": "Output topic of accepted alerts.",
            },
            {
                "name": "Input",
                "type": "string",
                "jsonPath": ".status.inputTopic",
                "description": "The topic the runner reads: the full stream, or the pool's lean stream (cutouts null).",
            },
            {
                "name": "Lag",
                "type": "integer",
                "jsonPath": ".status.lag",
                "description": "Input messages the runners have not processed yet (as they last reported).",
            },
            {
                "name": "Last Accepted",
                "type": "date",
                "jsonPath": ".status.lastAcceptedTime",
                "description": "When the filter last forwarded an accepted alert.",
            },
            {
                "name": "Reason",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
                "priority": 1,
                "description": "Why the filter is (not) ready.",
            },
            age,
        ],
        "An astronomer's alert filter: Python source run against the full alert stream; accepted alerts "
        "(at most maxAlertsPerVisit per visit) are written to the filter's own Kafka topic.",
        # A DNS label: the names of the filter's children are made of its namespace and name joined by
        # '.', which neither holds, so two filters never share a child (naming.py).
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": FILTER_NAME_MAX, "pattern": DNS_LABEL},
            },
        },
    )
    filterpool = _crd(
        "FilterPool",
        "filterpools",
        ["fpool"],
        "Cluster",
        model_schema(FilterPoolSpec, "The pool's nodes, capacity, local Kafka and mirror."),
        model_schema(FilterPoolStatus, "What the operator observed and did."),
        [
            _ready_column(),
            {
                "name": "Used",
                "type": "integer",
                "jsonPath": ".status.used",
                "description": "Filters placed in the pool.",
            },
            {
                "name": "Free",
                "type": "integer",
                "jsonPath": ".status.free",
                "description": "Filters the pool can still take.",
            },
            {
                "name": "Kafka",
                "type": "string",
                "jsonPath": ".status.kafkaCluster",
                "description": "Pool-local Kafka cluster.",
            },
            age,
        ],
        "A pool of labelled nodes that runs filters, with its own Kafka fed by MirrorMaker 2 from the central Kafka.",
    )
    return {"alerts.lsst.io_alertfilters.yaml": alertfilter, "alerts.lsst.io_filterpools.yaml": filterpool}


HEADER = "# Generated by `python -m alertfilter_operator.crdgen` from operator/src/alertfilter_operator/models.py.\n# Do not edit: change the models and regenerate.\n"


def render(manifest: dict[str, Any]) -> str:
    """A CRD manifest as the YAML text of its file in ``crds/`` (with the generated-file header)."""
    return HEADER + yaml.safe_dump(manifest, sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    """``alertfilter-crdgen [OUT_DIR] [--check]``; returns the exit code (1: ``--check`` found stale files)."""
    p = argparse.ArgumentParser(prog="alertfilter-crdgen", description="Generate the CRDs from the typed models.")
    p.add_argument("out_dir", nargs="?", default="crds")
    p.add_argument("--check", action="store_true", help="exit 1 when the files differ from the models")
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    stale = []
    for name, manifest in crds().items():
        text = render(manifest)
        path = out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(
            "CRDs out of date with the models; run `python -m alertfilter_operator.crdgen crds`: " + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
