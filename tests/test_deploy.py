"""The Kubernetes manifests in deploy/ parse, probe /health, never reach for a hub, and use
only flags that exist: ours (`radixlm.runtime.cli.build_parser`) and, for what `radixlm
router` passes on, the pinned sglang-router's own (its --help)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from radixlm.runtime.cli import build_parser
from radixlm.runtime.server.router import RouterConfig, router_command
from radixlm.runtime.server_args import ServerArgs

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
ENV_REFERENCE = re.compile(r"\$\((\w+)\)")  # Kubernetes expands $(VAR) from the container's env


def documents() -> list[dict]:
    return [d for f in sorted(DEPLOY.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def containers() -> list[dict]:
    return [c for d in documents() if d["kind"] in ("Deployment", "StatefulSet")
            for c in d["spec"]["template"]["spec"]["containers"]]


def radixlm_argv(container: dict) -> list[str]:
    assert container["command"] == ["radixlm"], container["command"]
    env = {e["name"] for e in container.get("env", [])}
    for arg in container["args"]:
        for name in ENV_REFERENCE.findall(arg):
            assert name in env, f"{arg} names {name}, which the container does not define"
    return [ENV_REFERENCE.sub(lambda m: f"<{m.group(1)}>", a) for a in container["args"]]


def by_command(name: str) -> list[dict]:
    return [c for c in containers() if c["args"][0] == name]


def test_there_are_replicas_and_a_router():
    assert len(by_command("serve")) == 1 and len(by_command("router")) == 1
    kinds = {d["kind"] for d in documents()}
    assert {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding"} <= kinds


def test_replica_flags_exist_in_our_cli():
    (replica,) = by_command("serve")
    args = ServerArgs.from_cli(build_parser().parse_args(radixlm_argv(replica)))
    assert args.replica_name == "<POD_NAME>" and args.dp == 1


def test_router_flags_exist_in_our_cli_and_in_the_pinned_router(router_flags):
    (router,) = by_command("router")
    config = RouterConfig.from_cli(build_parser().parse_args(radixlm_argv(router)))
    assert config.service_discovery and config.policy == "cache_aware"
    passed = {a for a in router_command(config) if a.startswith("--")}
    assert passed <= router_flags, passed - router_flags


def test_the_router_selects_exactly_the_replica_pods():
    (router,) = by_command("router")
    config = RouterConfig.from_cli(build_parser().parse_args(radixlm_argv(router)))
    (replicas,) = [d for d in documents() if d["kind"] == "Deployment" and d["metadata"]["name"] == "radixlm-replica"]
    labels = replicas["spec"]["template"]["metadata"]["labels"]
    assert dict(s.split("=", 1) for s in config.selector) == labels
    (replica,) = by_command("serve")
    assert config.service_discovery_port == replica["ports"][0]["containerPort"]


@pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
def test_replicas_are_probed_on_health(probe):
    (replica,) = by_command("serve")
    assert replica[probe]["httpGet"]["path"] == "/health"


def test_replicas_have_resources_and_download_nothing():
    (replica,) = by_command("serve")
    assert replica["resources"]["requests"]["cpu"] and replica["resources"]["limits"]["memory"]
    env = {e["name"]: e.get("value") for e in replica["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    assert replica["args"][replica["args"].index("--model-path") + 1].startswith("/models")
