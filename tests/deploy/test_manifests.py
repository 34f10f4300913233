"""What the Kubernetes manifests (rendered by kustomize) and docker-compose.yml must get right
beyond their schemas: settings the service knows, probes and draining, the shared checkpoint
volume, GPU vs CPU, selectors that find the pods, and what the alert rules and autoscaler assume.
Schemas themselves are checked by deploy/check.sh (kubernetes-validate, check-jsonschema)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from service.settings import Settings
from tests.deploy.conftest import DEPLOY, ROOT

Resources = dict[str, list[dict[str, Any]]]
SERVING = ("base", "overlays/gpu", "overlays/cpu")
PREFIX = "CLIPSERVE_"


def find(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [r for r in resources if r["kind"] == kind]
    return found


def container(resources: list[dict[str, Any]], kind: str = "Deployment") -> dict[str, Any]:
    (main,) = find(resources, kind)["spec"]["template"]["spec"]["containers"]
    return main


def settings_env(resources: list[dict[str, Any]]) -> dict[str, str]:
    """The CLIPSERVE_* variables the serving container gets (ConfigMap via envFrom)."""
    return {k: v for k, v in find(resources, "ConfigMap")["data"].items() if k.startswith(PREFIX)}


def as_settings(env: dict[str, str]) -> Settings:
    """Parse variables the way the service does: unknown names and bad values raise."""
    return Settings(**{name.removeprefix(PREFIX).lower(): value for name, value in env.items()})


def compose_env() -> dict[str, dict[str, str]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    result = {}
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        # "${VAR:-default}" -> default; a key without a value is passed through from the shell.
        resolved = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items() if v is not None}
        result[name] = {k: v for k, v in resolved.items() if k.startswith(PREFIX)}
    return result


@pytest.mark.parametrize("name", SERVING)
def test_manifest_settings_are_service_settings(rendered: Resources, name: str) -> None:
    env = settings_env(rendered[name])
    settings = as_settings(env)
    assert settings.host == "0.0.0.0" and str(settings.checkpoint_dir) == "/checkpoints"
    main = container(rendered[name])
    assert [p["containerPort"] for p in main["ports"]] == [settings.port]
    assert {e["name"] for e in main.get("env", [])} <= {PREFIX + "ADMIN_TOKEN"}  # a Secret, optional
    assert main["env"][0]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_compose_settings_are_service_settings() -> None:
    services = compose_env()
    assert {"clipserve-gpu", "clipserve-cpu"} <= set(services)
    assert as_settings(services["clipserve-gpu"]).device == "cuda"
    assert as_settings(services["clipserve-cpu"]).device == "cpu"
    dockerfile_env = re.findall(r"\b(CLIPSERVE_\w+)=(\S+)", (ROOT / "Dockerfile").read_text())
    as_settings(dict(dockerfile_env))


@pytest.mark.parametrize("name", SERVING)
def test_probes_and_draining_fit_the_grace_period(rendered: Resources, name: str) -> None:
    pod = find(rendered[name], "Deployment")["spec"]["template"]["spec"]
    main = container(rendered[name])
    assert main["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert main["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert main["startupProbe"]["httpGet"]["path"] == "/health/live"
    sleep = main["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    settings = as_settings(settings_env(rendered[name]))
    needed = int(sleep[1]) + settings.drain_grace_s + settings.drain_timeout_s
    assert pod["terminationGracePeriodSeconds"] >= needed + 5, (pod["terminationGracePeriodSeconds"], needed)


@pytest.mark.parametrize("name", SERVING)
def test_every_replica_reads_the_one_shared_checkpoint_volume(rendered: Resources, name: str) -> None:
    pvc = find(rendered[name], "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    pod = find(rendered[name], "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v.get("persistentVolumeClaim")]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    (mount,) = [m for m in container(rendered[name])["volumeMounts"] if m["name"] == volume["name"]]
    settings = as_settings(settings_env(rendered[name]))
    assert mount["mountPath"] == str(settings.checkpoint_dir) and mount["readOnly"] is True
    assert settings.pretrained.startswith(mount["mountPath"] + "/")  # the weights file is on it too


def test_training_job_writes_into_the_served_volume_with_the_served_backbone(rendered: Resources) -> None:
    serving = as_settings(settings_env(rendered["overlays/gpu"]))
    claim = find(rendered["overlays/gpu"], "PersistentVolumeClaim")["metadata"]["name"]
    job = find(rendered["training"], "Job")
    pod = job["spec"]["template"]["spec"]
    (train,) = pod["containers"]
    (volume,) = [v for v in pod["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim]
    (mount,) = [m for m in train["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == str(serving.checkpoint_dir) and not mount.get("readOnly")
    env = {e["name"]: e.get("value") for e in train["env"]}
    assert (env["ARCH"], env["PRETRAINED"]) == (serving.arch, serving.pretrained)
    script = train["args"][0]
    assert "torchrun --standalone" in script and "--no-python" in script and "clipserve train" in script
    assert 'mv "/checkpoints/.$MODEL.safetensors.tmp" "/checkpoints/$MODEL.safetensors"' in script
    gpus = train["resources"]["limits"]["nvidia.com/gpu"]
    assert env["GPUS"] == str(gpus)


def test_gpu_overlay_requests_a_gpu_and_cpu_overlay_none(rendered: Resources) -> None:
    gpu, cpu = container(rendered["overlays/gpu"]), container(rendered["overlays/cpu"])
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert as_settings(settings_env(rendered["overlays/gpu"])).device == "cuda"
    assert "nvidia.com/gpu" not in str(cpu["resources"])
    assert as_settings(settings_env(rendered["overlays/cpu"])).device == "cpu"


@pytest.mark.parametrize("name", ["overlays/gpu", "overlays/cpu"])
def test_selectors_find_the_pods_and_the_rules_find_the_job(rendered: Resources, name: str) -> None:
    resources = rendered[name]
    deployment = find(resources, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert find(resources, "Service")["spec"]["selector"].items() <= labels.items()
    assert find(resources, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    monitor = find(resources, "PodMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    assert {e["port"] for e in monitor["podMetricsEndpoints"]} <= {
        p["name"] for p in container(resources)["ports"]
    }
    assert labels[monitor["jobLabel"]] == "clipserve"  # the rules and queries select job="clipserve"
    training_labels = find(rendered["training"], "Job")["metadata"]["labels"]
    assert not monitor["selector"]["matchLabels"].items() <= training_labels.items()

    scaled = find(resources, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    namespace = deployment["metadata"]["namespace"]
    for trigger in scaled["spec"]["triggers"]:
        assert f'namespace="{namespace}", job="clipserve"' in trigger["metadata"]["query"]
        assert trigger["metricType"] == "AverageValue"  # thresholds are per pod
    for resource in resources:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace, resource["kind"]


def test_prometheus_rule_carries_the_rules_file() -> None:
    rule = yaml.safe_load((DEPLOY / "k8s/components/monitoring/prometheusrule.yaml").read_text())
    rules = yaml.safe_load((DEPLOY / "prometheus/rules/clipserve.rules.yml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]


def test_compose_mounts_what_grafana_and_prometheus_read() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in compose["grafana"]["volumes"] if m.startswith("./")}
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/clipserve.yml").read_text())
    dashboards = provider["providers"][0]["options"]["path"]
    assert (ROOT / mounts[dashboards] / "clipserve.json").is_file()
    assert (ROOT / mounts["/etc/grafana/provisioning"] / "datasources/prometheus.yml").is_file()
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090" and "prometheus" in compose
    prometheus_mounts = {m.split(":")[1]: m.split(":")[0] for m in compose["prometheus"]["volumes"]}
    assert prometheus_mounts["/etc/prometheus"] == "./deploy/prometheus"
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "clipserve"]
    host, port = job["static_configs"][0]["targets"][0].split(":")
    for name in ("clipserve-gpu", "clipserve-cpu"):
        assert host in compose[name]["networks"]["default"]["aliases"]
        assert compose_env()[name]["CLIPSERVE_PORT"] == port
