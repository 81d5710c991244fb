"""How radixlm drives sglang-router and places replicas, without starting a model
(runtime/server/router.py, replicas.py; the real thing is test_replicas.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from radixlm.runtime.cli import build_parser
from radixlm.runtime.server.dp_launch import LAUNCHER_FIELDS
from radixlm.runtime.server.replicas import Placement, Replica, plan_placements, split_evenly
from radixlm.runtime.server.router import ROUTER_MAIN, RouterConfig, router_command, router_env
from radixlm.runtime.server_args import ServerArgs, field_flags

URLS = ("http://127.0.0.1:31001", "http://127.0.0.1:31002")


def flags_of(argv: list[str]) -> set[str]:
    return {a for a in argv if a.startswith("--")}


def test_every_flag_we_pass_exists_in_the_pinned_router(router_flags):
    config = RouterConfig(worker_urls=URLS)
    discovery = RouterConfig(service_discovery=True, selector=("app=radixlm",), service_discovery_namespace="ns")
    for argv in (router_command(config), router_command(discovery)):
        assert argv[1:3] == ["-c", ROUTER_MAIN]
        assert flags_of(argv) <= router_flags, flags_of(argv) - router_flags


def test_every_setting_is_passed_explicitly():
    argv = router_command(RouterConfig(worker_urls=URLS))
    for flag in ("--host", "--port", "--policy", "--cache-threshold", "--balance-abs-threshold",
                 "--balance-rel-threshold", "--health-check-interval-secs", "--health-failure-threshold",
                 "--prometheus-host", "--prometheus-port", "--retry-max-retries", "--cb-failure-threshold"):
        assert flag in argv
    assert argv[argv.index("--worker-urls") + 1:][:2] == list(URLS)


def test_the_router_and_its_metrics_bind_the_host_asked_for():
    argv = router_command(RouterConfig(worker_urls=URLS))
    assert argv[argv.index("--host") + 1] == argv[argv.index("--prometheus-host") + 1] == "127.0.0.1"


def test_the_api_key_travels_in_the_environment_and_the_router_runs_offline():
    config = RouterConfig(worker_urls=URLS, api_key="secret")
    assert "secret" not in " ".join(router_command(config))
    env = router_env(config)
    assert env["RADIXLM_API_KEY"] == "secret" and env["HF_HUB_OFFLINE"] == "1"
    assert "RADIXLM_API_KEY" not in router_env(RouterConfig(worker_urls=URLS))


@pytest.mark.parametrize("changes, message", [
    ({"worker_urls": ()}, "needs --worker-urls"),
    ({"service_discovery": True}, "needs --selector"),
    ({"policy": "fastest"}, "policy must be"),
    ({"cache_threshold": 1.5}, "cache_threshold"),
    ({"retry_max_retries": 2, "cb_failure_threshold": 2}, "must exceed cb_failure_threshold"),
])
def test_bad_router_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        RouterConfig(**{"worker_urls": URLS, **changes})


def test_radixlm_router_parses_worker_urls_into_the_config():
    ns = build_parser().parse_args(["router", "--worker-urls", *URLS, "--policy", "round_robin"])
    assert RouterConfig.from_cli(ns) == RouterConfig(worker_urls=URLS, policy="round_robin")


def test_cores_are_split_evenly_into_disjoint_sets():
    assert split_evenly([0, 1, 2, 3, 4], 2) == [(0, 1, 2), (3, 4)]
    placements = plan_placements(2, cpus=[0, 1, 2, 3], gpus=0)
    assert placements == [Placement("replica-0", (0, 1), None), Placement("replica-1", (2, 3), None)]


def test_on_a_gpu_machine_each_replica_gets_its_own_device():
    assert [p.gpu for p in plan_placements(2, cpus=[0, 1, 2, 3], gpus=4)] == [0, 1]
    with pytest.raises(ValueError, match="needs 3 CUDA devices"):
        plan_placements(3, cpus=[0, 1], gpus=2)


def test_with_tp_each_replica_sees_its_own_run_of_devices():
    placements = plan_placements(2, cpus=[0, 1, 2, 3], gpus=4, gpus_per_replica=2)
    assert [p.visible_devices for p in placements] == ["0,1", "2,3"]
    with pytest.raises(ValueError, match="--dp 2 --tp 2 needs 4 CUDA devices; this machine has 3"):
        plan_placements(2, cpus=[0, 1], gpus=3, gpus_per_replica=2)


def test_more_replicas_than_cores_is_refused():
    with pytest.raises(ValueError, match="at least 3 CPU cores"):
        plan_placements(3, cpus=[0, 1], gpus=0)


def test_replica_flags_round_trip_through_the_cli():
    args = ServerArgs(max_total_tokens=4096, disable_torch_compile=True, log_level="warning", dp=2, port=40000)
    flags = field_flags(args, exclude=LAUNCHER_FIELDS)
    parsed = ServerArgs.from_cli(build_parser().parse_args(["serve", *flags]))
    assert parsed == args.replace(dp=1, port=ServerArgs.port)


def test_a_replica_runs_one_scheduler_thread_per_core_of_its_set_less_one():
    replica = Replica(Placement("replica-0", (0, 1, 2), None), ["--max-total-tokens", "4096"], 31001, None)
    assert replica.flags[-4:] == ["--replica-name", "replica-0", "--scheduler-threads", "2"]


def test_serve_help_shows_dp():
    serve_help = subprocess.run([sys.executable, "-m", "radixlm.runtime.cli", "serve", "--help"],
                                capture_output=True, text=True, check=True).stdout
    assert "--dp DP" in serve_help and "--replica-name" in serve_help


def test_dp_without_the_router_installed_fails_at_once_saying_how_to_install_it():
    hide_router = ("import sys; sys.modules['sglang_router'] = None; sys.modules['sglang_router.version'] = None; "
                   "from radixlm.runtime.cli import main; sys.exit(main(['serve', '--dp', '2']))")
    proc = subprocess.run([sys.executable, "-c", hide_router], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert 'pip install "radixlm[router]"' in proc.stderr
