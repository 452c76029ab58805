"""The Kubernetes manifests: every overlay renders and validates (veil_tools.k8svalidate, the same check
as `make k8s-validate`), and the rendered objects keep the deployment's invariants."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from veil.errors import InvalidArgument
from veil_tools.k8svalidate import (K8S_DIR, ROOT, dashboards, load_manifests, promql_metrics, render,
                              validate_all, validate_dashboard, validate_object)

Manifest = dict[str, Any]
OVERLAYS = ("cpu-dev", "gpu")
SERVICES = {"anonymizer": "Anonymizer", "gateway": "Gateway", "unlearner": "Unlearner"}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
README = (ROOT / "deploy" / "README.md").read_text()


@pytest.fixture(scope="module")
def validation() -> tuple[dict[str, list[Manifest]], list]:
    return validate_all()


@pytest.fixture(scope="module")
def rendered(validation) -> dict[str, list[Manifest]]:
    return {name: validation[0][f"deploy/k8s/overlays/{name}"] for name in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def objects(request, rendered) -> list[Manifest]:
    return rendered[request.param]


# --- helpers ------------------------------------------------------------------------------------

def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[Manifest], kind: str, name: str) -> Manifest:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_template(workload: Manifest) -> Manifest:
    return workload["spec"]["template"]


def containers(pod_spec: Manifest) -> Iterator[Manifest]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def workloads(objects: list[Manifest]) -> list[Manifest]:
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def service_deployment(objects: list[Manifest], service: str) -> Manifest:
    return named(objects, "Deployment", f"veil-{service}")


def selects(selector: Manifest, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        present, value = expr["key"] in labels, labels.get(expr["key"])
        ok = {"In": present and value in expr.get("values", []),
              "NotIn": not present or value not in expr.get("values", []),
              "Exists": present, "DoesNotExist": not present}[expr["operator"]]
        if not ok:
            return False
    return True


_SUFFIX = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: str | int | float) -> float:
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert match and match.group(2) in _SUFFIX, f"unparsed quantity {value!r}"
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in container.get("env", [])}


def container_port(container: Manifest, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return ports[name]


# --- validation ---------------------------------------------------------------------------------

def test_every_root_renders_and_every_object_validates_strictly(validation):
    sources, problems = validation
    assert [str(p) for p in problems] == []
    assert set(sources) == {"deploy/k8s/overlays/cpu-dev", "deploy/k8s/overlays/gpu",
                            "deploy/k8s/cloudnative-pg", "deploy/k8s/secret.example.yaml"}
    kinds = {source: {o["kind"] for o in objects} for source, objects in sources.items()}
    assert {"Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget", "Job", "StatefulSet",
            "ConfigMap", "Namespace"} <= kinds["deploy/k8s/overlays/cpu-dev"]
    assert {"HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule"} <= kinds["deploy/k8s/overlays/gpu"]
    assert kinds["deploy/k8s/cloudnative-pg"] == {"Namespace", "Cluster"}


def test_the_validator_rejects_what_an_api_server_would(tmp_path):
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                  "spec": {"selector": {}, "template": {"spec": {"containers": [
                      {"name": "a", "image": "b", "readinessProbe": {"grpc": {"port": 50051}}}]}}}}
    assert validate_object(deployment) == []
    deployment["spec"]["replica"] = 2
    assert validate_object(deployment) == ["spec: Additional properties are not allowed ('replica' was unexpected)"]
    del deployment["spec"]["replica"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "grpc"
    assert "is not of type 'integer'" in validate_object(deployment)[0]
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "x"}, "spec": {"selector": {}, "endpoints": [{"port": "metrics", "interval": "15sec"}]}}
    assert validate_object(monitor)[0].startswith("spec.endpoints.0.interval: '15sec' does not match")
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "x"},
            "spec": {"groups": [{"name": "g", "rules": [{"alert": "A"}]}]}}
    assert validate_object(rule) == ["spec.groups.0.rules.0: 'expr' is a required property"]
    assert validate_object({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"}}) \
        == ["no schema for example.com/v1 Widget in Kubernetes 1.33 or in deploy/k8s/schemas"]
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(InvalidArgument, match="kubectl kustomize .* failed: .*missing.yaml"):
        render(tmp_path)


# --- containers ---------------------------------------------------------------------------------

def test_every_container_is_bounded_and_hardened(objects):
    checked = 0
    for workload in workloads(objects):
        pod = pod_template(workload)["spec"]
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        assert pod.get("automountServiceAccountToken") is False, where
        assert pod.get("serviceAccountName", "default") != "default", where
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), where
        assert all("hostPath" not in v for v in pod.get("volumes", [])), where
        pod_security = pod.get("securityContext", {})
        for container in containers(pod):
            at = f"{where} container {container['name']}"
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request is not None and limit is not None, f"{at}: no {resource} request/limit"
                assert quantity(limit) >= quantity(request), f"{at}: {resource} limit below request"
            security = container.get("securityContext", {})
            assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, at
            assert security.get("runAsUser", pod_security.get("runAsUser", 1)) != 0, at
            assert security.get("readOnlyRootFilesystem") is True, at
            assert security.get("allowPrivilegeEscalation") is False, at
            assert security.get("capabilities", {}).get("drop") == ["ALL"], at
            assert not security.get("capabilities", {}).get("add"), at
            seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", at
            checked += 1
    assert checked >= 9


def test_grpc_services_have_native_grpc_probes_and_agree_on_ports(objects):
    for service, proto_name in SERVICES.items():
        deployment = service_deployment(objects, service)
        pod = pod_template(deployment)["spec"]
        main = next(c for c in pod["containers"] if c["name"] == service)
        grpc_port, metrics_port = container_port(main, "grpc"), container_port(main, "metrics")
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = main.get(probe_name, {})
            assert probe.get("grpc", {}).get("port") == grpc_port, f"{service} {probe_name}"
        assert main["readinessProbe"]["grpc"]["service"] == f"veil.v1.{proto_name}", service
        # The gateway's service entry follows the anonymizer (readiness); it has started once it
        # serves at all, or an anonymizer loading its model would get it restarted.
        started = "" if service == "gateway" else f"veil.v1.{proto_name}"
        assert main["startupProbe"]["grpc"].get("service", "") == started, service
        assert main["livenessProbe"]["grpc"].get("service", "") == "", service
        startup = main["startupProbe"]
        budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
        assert budget >= (600 if service == "anonymizer" else 180), f"{service}: startup budget {budget}s"
        env = env_of(main)
        assert env["VEIL_GRPC_ADDRESS"]["value"].endswith(f":{grpc_port}")
        assert env["VEIL_METRICS_PORT"]["value"] == str(metrics_port)
        shared = next(o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].startswith("veil-shared-"))
        grace = float(shared["data"]["VEIL_SHUTDOWN_GRACE_SECONDS"])
        pre_stop = main["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["terminationGracePeriodSeconds"] > grace + pre_stop, service
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_services_name_their_ports_grpc_and_metrics_and_select_only_their_pods(objects):
    for service in SERVICES:
        svc = named(objects, "Service", f"veil-{service}")
        main = next(c for c in pod_template(service_deployment(objects, service))["spec"]["containers"]
                    if c["name"] == service)
        ports = {p["name"]: p for p in svc["spec"]["ports"]}
        assert set(ports) == {"grpc", "metrics"}
        for name, port in ports.items():
            assert port["targetPort"] == name and port["port"] == container_port(main, name)
        selected = [w["metadata"]["name"] for w in workloads(objects)
                    if selects({"matchLabels": svc["spec"]["selector"]}, pod_template(w)["metadata"]["labels"])]
        assert selected == [f"veil-{service}"], f"Service veil-{service} selects {selected}"


# --- GPU ------------------------------------------------------------------------------------------

def test_gpu_is_requested_by_the_anonymizer_only_and_only_in_the_gpu_overlay(rendered):
    for overlay, objects in rendered.items():
        with_gpu = []
        for workload in workloads(objects):
            for container in containers(pod_template(workload)["spec"]):
                resources = container.get("resources", {})
                if any("nvidia.com/gpu" in resources.get(k, {}) for k in ("requests", "limits")):
                    with_gpu.append((workload["metadata"]["name"], container["name"],
                                     resources["limits"].get("nvidia.com/gpu")))
        expected = [("veil-anonymizer", "anonymizer", 1)] if overlay == "gpu" else []
        assert with_gpu == expected, overlay
        anonymizer = pod_template(service_deployment(objects, "anonymizer"))["spec"]
        config = next(o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].startswith("veil-anonymizer-"))
        image = anonymizer["containers"][0]["image"]
        if overlay == "gpu":
            assert anonymizer["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in anonymizer["tolerations"]
            assert config["data"]["VEIL_ANONYMIZER_DEVICE"] == "cuda" and image.endswith("-cuda")
        else:
            assert "nodeSelector" not in anonymizer and "tolerations" not in anonymizer
            assert config["data"]["VEIL_ANONYMIZER_DEVICE"] == "cpu" and not image.endswith("-cuda")
        others = [c["image"] for w in workloads(objects) if w["metadata"]["name"] != "veil-anonymizer"
                  for c in containers(pod_template(w)["spec"])]
        assert not any(i.endswith("-cuda") for i in others)


# --- network policies ---------------------------------------------------------------------------

def admitting_rules(objects: list[Manifest], labels: dict[str, str]) -> list[Manifest]:
    return [rule for policy in of_kind(objects, "NetworkPolicy")
            if selects(policy["spec"]["podSelector"], labels)
            for rule in policy["spec"].get("ingress", [])]


def from_outside(rule: Manifest) -> bool:
    """Does the rule admit peers outside the namespace? (no `from`: everyone)"""
    peers = rule.get("from")
    return not peers or any("ipBlock" in p or "namespaceSelector" in p for p in peers)


def rule_ports(rule: Manifest) -> set:
    return {p["port"] for p in rule.get("ports", [])} or {"*"}


MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


def test_network_policies_admit_outside_traffic_only_to_the_gateway(objects):
    policies = of_kind(objects, "NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")
            and not p["spec"].get("egress") and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}]
    assert len(deny) == 1, "a default deny of ingress and egress for the whole namespace"
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        labels = pod_template(workload)["metadata"]["labels"]
        for rule in admitting_rules(objects, labels):
            if not from_outside(rule):
                continue
            if name == "veil-gateway" and rule_ports(rule) == {"grpc"}:
                continue
            assert rule_ports(rule) == {"metrics"} and rule["from"] == [MONITORING], \
                f"{name} admits {rule} from outside the namespace"
    for service in ("anonymizer", "unlearner"):
        labels = pod_template(service_deployment(objects, service))["metadata"]["labels"]
        grpc_rules = [r for r in admitting_rules(objects, labels) if rule_ports(r) & {"grpc", "*"}]
        assert grpc_rules and all(
            r.get("from") == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}]
            for r in grpc_rules), f"{service}: its gRPC port admits more than the gateway"
    gateway_labels = pod_template(service_deployment(objects, "gateway"))["metadata"]["labels"]
    assert any(not r.get("from") and rule_ports(r) == {"grpc"} for r in admitting_rules(objects, gateway_labels))


def test_network_policies_open_every_edge_the_services_need(objects):
    def egress_to(labels: dict[str, str], port: int) -> bool:
        return any(
            any(p["port"] == port for p in rule.get("ports", []))
            for policy in of_kind(objects, "NetworkPolicy")
            if "Egress" in policy["spec"]["policyTypes"] and selects(policy["spec"]["podSelector"], labels)
            for rule in policy["spec"].get("egress", []))

    gateway = pod_template(service_deployment(objects, "gateway"))["metadata"]["labels"]
    assert egress_to(gateway, 50051) and egress_to(gateway, 50052)
    for workload in workloads(objects):
        labels = pod_template(workload)["metadata"]["labels"]
        uses = {e.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
                for c in containers(pod_template(workload)["spec"]) for e in c.get("env", [])}
        name = workload["metadata"]["name"]
        assert egress_to(labels, 53), f"{name}: no DNS"
        if "veil-database" in uses:
            assert labels.get("veil.io/database") == "client" and egress_to(labels, 5432), name
        if "veil-s3" in uses:
            assert labels.get("veil.io/object-store") == "client" and egress_to(labels, 9000), name
    minio = pod_template(named(objects, "StatefulSet", "veil-minio"))["metadata"]["labels"]
    assert any(r.get("from") == [{"podSelector": {"matchLabels": {"veil.io/object-store": "client"}}}]
               for r in admitting_rules(objects, minio))


# --- secrets ------------------------------------------------------------------------------------

def secret_references(objects: list[Manifest]) -> set[tuple[str, str]]:
    refs = set()
    for workload in workloads(objects):
        pod = pod_template(workload)["spec"]
        for container in containers(pod):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
            assert not any("secretRef" in e for e in container.get("envFrom", []))
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                refs.add((volume["secret"]["secretName"], "*"))
    return refs


def test_no_secret_is_committed_and_every_referenced_key_is_in_the_example(rendered, validation):
    example = {s["metadata"]["name"]: s for s in validation[0]["deploy/k8s/secret.example.yaml"]}
    assert all(s["kind"] == "Secret" for s in example.values())
    assert all("data" not in s for s in example.values())
    for secret in example.values():
        for key, value in secret["stringData"].items():
            assert re.search(r"<[^>]+>", value), f"{secret['metadata']['name']}/{key} is not a placeholder"
    for overlay, objects in rendered.items():
        assert of_kind(objects, "Secret") == [], overlay
        for name, key in secret_references(objects):
            assert name in example, f"{overlay} references Secret {name}, missing from the example"
            assert key == "*" or key in example[name]["stringData"], f"{overlay}: {name}/{key}"
    secret_files = []
    for path in (ROOT / "deploy").rglob("*.y*ml"):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        if any(d.get("kind") == "Secret" for d in docs):
            secret_files.append(path.relative_to(ROOT))
    assert secret_files == [Path("deploy/k8s/secret.example.yaml")]



def test_internal_services_need_the_shared_secret_and_the_gateway_presents_it(objects):
    """Gateway, anonymizer and unlearner read VEIL_INTERNAL_TOKEN_FILE from the one Secret
    veil-internal-token, mounted read-only: no pod but the gateway's can act for a tenant."""
    for service in ("gateway", "anonymizer", "unlearner"):
        pod = pod_template(service_deployment(objects, service))["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        main = pod["containers"][0]
        path = env_of(main)["VEIL_INTERNAL_TOKEN_FILE"]["value"]
        mounts = [m for m in main.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")]
        assert len(mounts) == 1 and mounts[0].get("readOnly") is True, service
        secret = volumes[mounts[0]["name"]]["secret"]
        assert secret["secretName"] == "veil-internal-token", service
        assert path.rsplit("/", 1)[1] == "token" and secret.get("defaultMode", 0o644) & 0o007 == 0, service


# --- migrations ---------------------------------------------------------------------------------

def test_migrations_run_in_jobs_and_deployments_only_wait_for_them(objects):
    for deployment in of_kind(objects, "Deployment"):
        for container in containers(pod_template(deployment)["spec"]):
            command = " ".join(container.get("command", []) + container.get("args", []))
            assert "migrate" not in command, f"{deployment['metadata']['name']} runs a migration"
    for service in ("gateway", "unlearner"):
        job = named(objects, "Job", f"veil-migrate-{service}")
        pod = pod_template(job)["spec"]
        assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 1
        (migrate,) = pod["containers"]
        assert migrate["command"] == ["python", "-m", "veil.db", "migrate", "--service", service]
        deployment = pod_template(service_deployment(objects, service))["spec"]
        main = next(c for c in deployment["containers"] if c["name"] == service)
        (gate,) = deployment["initContainers"]
        assert gate["command"][:6] == ["python", "-m", "veil.db", "wait", "--service", service]
        assert migrate["image"] == gate["image"] == main["image"]
        dsn = env_of(main)["VEIL_DATABASE_URL"]
        assert env_of(migrate)["VEIL_DATABASE_URL"] == env_of(gate)["VEIL_DATABASE_URL"] == dsn
        assert dsn["valueFrom"]["secretKeyRef"] == {"name": "veil-database", "key": f"{service}-url"}


# --- availability, scaling, monitoring ------------------------------------------------------------

def test_every_deployment_has_one_disruption_budget(objects):
    budgets = of_kind(objects, "PodDisruptionBudget")
    for deployment in of_kind(objects, "Deployment"):
        labels = pod_template(deployment)["metadata"]["labels"]
        covering = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        assert len(covering) == 1, deployment["metadata"]["name"]
        assert covering[0]["spec"].get("maxUnavailable") == 1


def test_the_anonymizer_autoscales_on_its_queue_in_gpu_and_not_in_cpu_dev(rendered):
    adapter = yaml.safe_load((K8S_DIR / "prometheus-adapter-values.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    (hpa,) = of_kind(rendered["gpu"], "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "veil-anonymizer"}
    metrics = hpa["spec"]["metrics"]
    assert {m["type"] for m in metrics} == {"Pods"}
    assert {m["pods"]["metric"]["name"] for m in metrics} == served
    assert all(name.startswith("veil_anonymizer_queue_") for name in served)
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert "replicas" not in service_deployment(rendered["gpu"], "anonymizer")["spec"], "the HPA owns it"
    assert of_kind(rendered["cpu-dev"], "HorizontalPodAutoscaler") == []
    assert all(d["spec"]["replicas"] == 1 for d in of_kind(rendered["cpu-dev"], "Deployment"))


def test_monitoring_scrapes_every_service_and_alerts_on_documented_metrics(rendered):
    objects = rendered["gpu"]
    (monitor,) = of_kind(objects, "ServiceMonitor")
    scraped = [s["metadata"]["name"] for s in of_kind(objects, "Service")
               if selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))
               and any(p["name"] == "metrics" for p in s["spec"]["ports"])]
    assert sorted(scraped) == [f"veil-{s}" for s in sorted(SERVICES)]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    (rule,) = of_kind(objects, "PrometheusRule")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    names = {a["alert"] for a in alerts}
    # Error rate, latency, queue, GPU memory, ledger refusals, unlearning failures.
    assert {"VeilRpcServerErrors", "VeilRpcLatencyHigh", "VeilAnonymizerQueueWaitHigh",
            "VeilGpuMemoryHigh", "VeilLedgerRefusalsSpike", "VeilUnlearningJobsFailing"} <= names
    documented = set(re.findall(r"^\| `(veil_[a-z0-9_]+)` \|", README, re.M))
    for alert in alerts:
        assert alert["labels"]["severity"] in {"warning", "critical"} and alert["annotations"]["summary"]
        assert f"| `{alert['alert']}` |" in README, f"{alert['alert']} is not in deploy/README.md"
        assert promql_metrics(alert["expr"]) <= documented, alert["alert"]
    assert {"veil_anonymizer_queue_depth", "veil_anonymizer_queue_wait_seconds"} <= documented


# --- documentation --------------------------------------------------------------------------------

def test_every_variable_of_the_code_and_the_manifests_is_in_the_readme(rendered):
    in_code = set()
    for path in [*(ROOT / "veil").rglob("*.py"), *(ROOT / "services").rglob("*.py")]:
        in_code |= set(re.findall(r'env_field\(\s*"(VEIL_[A-Z0-9_]+)"', path.read_text()))
    assert len(in_code) >= 40
    in_manifests = set()
    for objects in rendered.values():
        for config in of_kind(objects, "ConfigMap"):
            in_manifests |= {k for k in config.get("data", {}) if k.startswith("VEIL_")}
        for workload in workloads(objects):
            for container in containers(pod_template(workload)["spec"]):
                in_manifests |= {e["name"] for e in container.get("env", []) if e["name"].startswith("VEIL_")}
    in_manifests |= set(re.findall(r"\b(VEIL_[A-Z0-9_]+)=", (ROOT / "deploy" / "docker" / "Dockerfile").read_text()))
    documented = set(re.findall(r"^\| `(VEIL_[A-Z0-9_]+)` \|", README, re.M))
    assert in_code - documented == set(), "variables of the code missing from deploy/README.md"
    assert in_manifests - documented == set(), "variables of the manifests missing from deploy/README.md"


def test_load_manifests_skips_empty_documents():
    assert load_manifests("---\n# only a comment\n---\nkind: A\n---\n") == [{"kind": "A"}]


def test_make_k8s_validate_entry_point_reports_each_root(capsys):
    from veil_tools.k8svalidate import main

    assert main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4
    assert all(re.fullmatch(r"deploy/k8s/\S+: [1-9][0-9]* objects, 0 problems \(Kubernetes 1.33, strict\)", line)
               for line in out), out


def test_the_dashboard_is_provisioned_by_the_monitoring_component_and_checked(rendered):
    (name,) = dashboards(rendered["gpu"])
    assert name == "ConfigMap/veil-grafana-dashboard/veil.json"
    assert dashboards(rendered["cpu-dev"]) == {}  # cpu-dev leaves the monitoring component out
    (dashboard,) = dashboards(rendered["gpu"]).values()
    assert validate_dashboard(dashboard) == []
    broken = {**dashboard, "panels": [*dashboard["panels"], {
        "id": 1, "type": "timeseries", "title": "typo", "targets": [{"expr": "rate(up[5m]"}]}]}
    messages = validate_dashboard(broken)
    assert any("panel ids repeat" in m for m in messages)
    assert "panel 'typo': every target must query a veil_* metric" in messages
    assert "panel 'typo': unbalanced brackets in a query" in messages
