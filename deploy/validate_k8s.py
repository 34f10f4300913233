"""Validate rendered Kubernetes manifests (`kustomize build` output) against their schemas.

Built-in kinds: kubernetes-validate, strict (an unknown field is an error), for each Kubernetes
version given. Custom resources (PodMonitor, PrometheusRule, ScaledObject): the openAPIV3Schema
of the CRDs vendored in deploy/k8s/crds, made strict the same way (the API server would prune an
unknown field silently; we refuse it). A kind with no schema is an error.

Runs in deploy/check.sh's tool environment: python deploy/validate_k8s.py -k 1.30.0 FILE...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

CRDS = Path(__file__).resolve().parent / "k8s" / "crds"


def strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema in which objects with declared properties allow no others."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    open_object = schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema
    if "properties" in schema and not open_object:
        result["additionalProperties"] = False
    return result


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, for every served version of the vendored CRDs."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = strict(version["schema"]["openAPIV3Schema"])
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def validate(doc: dict[str, Any], versions: list[str], crds: dict[tuple[str, str], Any]) -> list[str]:
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if key in crds:
        validator = jsonschema.Draft7Validator(crds[key])
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}" for e in validator.iter_errors(doc)
        ]
    errors = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(map(str, error.path)) or "."
            errors.append(f"Kubernetes {version}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"Kubernetes {version}: no schema: {error}")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-k", "--kubernetes-version", action="append", required=True, dest="versions")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    crds, failed, count = crd_schemas(), 0, 0
    for path in args.files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            count += 1
            name = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            errors = validate(doc, args.versions, crds)
            failed += bool(errors)
            print(f"{'FAIL' if errors else 'ok  '} {name}")
            for error in errors:
                print(f"       {error}")
    print(f"{count - failed} of {count} resources valid (Kubernetes {', '.join(args.versions)})")
    return 1 if failed or not count else 0


if __name__ == "__main__":
    sys.exit(main())
