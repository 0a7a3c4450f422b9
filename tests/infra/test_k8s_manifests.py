"""The Kubernetes manifests of infra/k8s/ are valid and agree with the code they deploy.

Validated offline against the Kubernetes OpenAPI schemas that the PyPI package
``kubernetes-validate`` ships (no cluster here); the KEDA ScaledObject, a custom resource the
package has no schema for, is checked field by field against KEDA's documented Kafka scaler.
Beyond the schemas, the manifests must match the code: every container's arguments parse with
the ``ioe`` command's own parser, every variable of the ConfigMap is one ``ioe/settings.py``
reads, and the autoscaler watches the worker's real consumer group and topic.
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ioe.cli import BY_NAME
from ioe.settings import Settings
from ioe.topics import READINGS

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"
SETTINGS_PY = Path(__file__).resolve().parents[2] / "ioe" / "settings.py"


def _docs() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return docs


DOCS = _docs()


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} documents"
    return found[0]


def _containers() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for doc in DOCS:
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        pod = spec.get("template", {}).get("spec", {})
        out += [(doc["metadata"]["name"], c) for c in pod.get("containers", [])]
    return out


def test_every_manifest_file_is_listed_in_the_kustomization() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("doc", [d for d in DOCS if not d["apiVersion"].startswith("keda.sh/")],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_core_resources_validate_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_the_validator_refuses_a_broken_deployment() -> None:
    """The check above can fail: a mistyped field is refused."""
    broken = yaml.safe_load(yaml.safe_dump(_one("Deployment", "ioe-worker")))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def _command_parser(name: str) -> argparse.ArgumentParser:
    command = BY_NAME[name]
    parser = argparse.ArgumentParser(prog=f"ioe {name}", exit_on_error=False)
    importlib.import_module(command.module).configure(parser)
    return parser


@pytest.mark.parametrize("owner,container", _containers(), ids=lambda v: str(v)[:30])
def test_container_arguments_are_valid_ioe_commands(owner: str, container: dict[str, Any]
                                                    ) -> None:
    args = container["args"]
    assert args[0] in BY_NAME, f"{owner}: unknown command {args[0]}"
    _command_parser(args[0]).parse_args(args[1:])  # raises SystemExit on an unknown flag


def test_configmap_sets_only_variables_the_settings_read() -> None:
    read = set(re.findall(r'_env\("(IOE_[A-Z_]+)"', SETTINGS_PY.read_text()))
    config = _one("ConfigMap", "ioe-config")["data"]
    assert set(config) <= read, set(config) - read


def test_autoscaler_watches_the_workers_consumer_group_and_topic() -> None:
    from streams.app import WorkerConfig, app_id

    scaled = _one("ScaledObject", "ioe-worker")
    config = _one("ConfigMap", "ioe-config")["data"]
    target = scaled["spec"]["scaleTargetRef"]["name"]
    assert _one("Deployment", target)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == app_id(Settings(topic_prefix=""), WorkerConfig())
    assert meta["topic"] == READINGS
    assert meta["bootstrapServers"] == config["IOE_KAFKA"]
    assert int(meta["lagThreshold"]) > 0
    # replicas beyond the partition count would hold no partition
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] == int(config["IOE_PARTITIONS"])


def test_worker_shutdown_and_rollout_fit_the_faust_group() -> None:
    from streams.app import WorkerConfig

    worker = _one("Deployment", "ioe-worker")
    pod = worker["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > 3 * WorkerConfig().session_timeout_s
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    probe = pod["containers"][0]["readinessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
    args = pod["containers"][0]["args"]
    assert ports[probe["port"]] == int(args[args.index("--web-port") + 1])


def test_mqtt_bridge_is_a_singleton() -> None:
    """One persistent MQTT session per client id: two bridges would take it from each other."""
    bridge = _one("Deployment", "ioe-mqtt-bridge")
    assert bridge["spec"]["replicas"] == 1
    assert bridge["spec"]["strategy"]["type"] == "Recreate"


def test_no_secret_values_in_the_manifests() -> None:
    assert not [d for d in DOCS if d["kind"] == "Secret"]
    text = "\n".join(p.read_text() for p in K8S.glob("*.yaml")).lower()
    assert "password:" not in text and "token_secret:" not in text


# -- the RocksDB overlay (infra/k8s/rocksdb/) ------------------------------------------------------
ROCKSDB = K8S / "rocksdb"


def _overlay_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROCKSDB / "worker-statefulset.yaml").read_text()) if d]


@pytest.mark.parametrize("doc", _overlay_docs(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_rocksdb_overlay_validates_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_rocksdb_workers_keep_their_tables_on_their_own_volume() -> None:
    from streams.app import WorkerConfig

    (stateful,) = [d for d in _overlay_docs() if d["kind"] == "StatefulSet"]
    pod = stateful["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = _command_parser("worker").parse_args(container["args"][1:])
    assert args.store == "rocksdb"
    (claim,) = stateful["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert str(args.data_dir).startswith(mounts[claim["metadata"]["name"]] + "/")
    # the same group member as the Deployment it replaces: grace, probe, rollout
    base = _one("Deployment", "ioe-worker")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == base["terminationGracePeriodSeconds"] > (
        3 * WorkerConfig().session_timeout_s)
    assert container["readinessProbe"] == base["containers"][0]["readinessProbe"]
    assert stateful["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert stateful["spec"]["serviceName"] in {d["metadata"]["name"] for d in _overlay_docs()
                                              if d["kind"] == "Service"}


def test_rocksdb_overlay_replaces_the_deployment_and_retargets_the_autoscaler() -> None:
    kustomization = yaml.safe_load((ROCKSDB / "kustomization.yaml").read_text())
    assert "../" in kustomization["resources"]
    assert "worker-statefulset.yaml" in kustomization["resources"]
    patches = [yaml.safe_load(p["patch"]) for p in kustomization["patches"]]
    (deleted,) = [p for p in patches if isinstance(p, dict) and p.get("$patch") == "delete"]
    assert (deleted["kind"], deleted["metadata"]["name"]) == ("Deployment", "ioe-worker")
    (retarget,) = [p for p in patches if isinstance(p, list)]
    assert retarget == [{"op": "add", "path": "/spec/scaleTargetRef/kind",
                         "value": "StatefulSet"}]
    scaled = _one("ScaledObject", "ioe-worker")
    (stateful,) = [d for d in _overlay_docs() if d["kind"] == "StatefulSet"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == stateful["metadata"]["name"]
