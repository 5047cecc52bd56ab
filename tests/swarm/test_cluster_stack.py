"""The three-node overlay (swarm/stack.cluster.yml) as Swarm would deploy it, and the runc wrapper.

`docker stack config` merges swarm/stack.yml with the overlay (no daemon needed):
the tests read what Swarm would get, since an overlay's merge rules (maps merged,
lists appended) decide what a service ends up with.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.swarm.test_stack_file import EMS_SERVICES, STACK_FILE, stack_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_FILE = ROOT / "swarm" / "stack.cluster.yml"
MEMBERS = (1, 2, 3)


@pytest.fixture(scope="module")
def cluster() -> dict:
    return stack_config(STACK_FILE, CLUSTER_FILE, EMS_IMAGE="registry:5000/ems-cluster/ems:latest",
                        EMS_REGISTRY="registry:5000")["services"]


def test_every_service_uses_dns_round_robin(cluster):
    """No virtual IPs: this kernel has no IPVS."""
    assert {name for name, service in cluster.items()
            if service.get("deploy", {}).get("endpoint_mode") != "dnsrr"} == set()


@pytest.mark.parametrize("kind", ["db", "rabbitmq"])
def test_one_member_pinned_to_each_node_with_its_own_volume(cluster, kind):
    volumes = set()
    for member in MEMBERS:
        service = cluster[f"{kind}{member}"]
        assert service["deploy"]["placement"]["constraints"] == [f"node.labels.ems.node == {member}"]
        assert service["hostname"] == f"{kind}{member}"
        assert service["image"].startswith("registry:5000/ems-cluster/")
        (volume,) = service["volumes"]
        # Members find each other by name before any is healthy: no health-gated DNS.
        assert service["healthcheck"] == {"disable": True}
        volumes.add(volume["source"])
    assert len(volumes) == len(MEMBERS)


def test_the_single_broker_is_replaced_by_three_named_alike(cluster):
    assert cluster["rabbitmq"]["deploy"]["replicas"] == 0
    for member in MEMBERS:
        service = cluster[f"rabbitmq{member}"]
        assert service["networks"]["backend"]["aliases"] == ["rabbitmq"]
        assert "ems_erlang_cookie" in {secret["source"] for secret in service["secrets"]}


def test_db_is_haproxy_in_front_of_galera_with_a_working_health_check(cluster):
    db = cluster["db"]
    assert db["image"].endswith("/ems-cluster/haproxy:latest")
    assert db["deploy"]["replicas"] == 2
    # stack.yml's check command, kept whole (an overlay would append to it): the
    # HAProxy image's healthcheck.sh answers for it.
    assert db["healthcheck"]["test"][:2] == ["CMD", "healthcheck.sh"]
    assert "healthcheck.sh" in (ROOT / "swarm/cluster/haproxy/Dockerfile").read_text()


def test_gateway_runs_on_every_node_with_https_host_ports(cluster):
    gateway = cluster["gateway"]
    assert gateway["deploy"]["mode"] == "global"
    assert {(port["target"], port["mode"]) for port in gateway["ports"]} == {(443, "host"), (80, "host")}
    assert {secret["source"] for secret in gateway["secrets"]} == {"ems_tls_cert", "ems_tls_key"}
    assert cluster["traefik"]["deploy"]["replicas"] == 0


def test_nothing_pulls_from_outside_the_registry(cluster):
    """Every image, even of a service kept at 0 tasks, names the cluster's registry."""
    assert {name: service["image"] for name, service in cluster.items()
            if not service["image"].startswith("registry:5000/")} == {}


def test_ems_services_use_quorum_queues_and_spread_over_the_nodes(cluster):
    for name in EMS_SERVICES:
        assert cluster[name]["environment"]["EMS_QUEUE_TYPE"] == "quorum", name
        # A connection to a killed node fails within seconds (no IPVS, no RST from a dead node).
        assert cluster[name]["sysctls"] == {"net.ipv4.tcp_retries2": "5"}, name
        if name != "migrate":
            preferences = cluster[name]["deploy"]["placement"]["preferences"]
            assert preferences == [{"spread": "node.labels.ems.node"}], name
    assert cluster["notifier"]["deploy"]["replicas"] >= 2
    assert cluster["balancer"]["deploy"]["replicas"] == 2


def _runc_wrapper():
    spec = importlib.util.spec_from_file_location("runc_wrapper", ROOT / "swarm/cluster/runc-wrapper.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runc_wrapper_removes_only_the_missing_capability(tmp_path):
    wrapper = _runc_wrapper()
    capabilities = ["CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"ociVersion": "1.0.2", "process": {"capabilities": {
        kind: list(capabilities) for kind in ("bounding", "effective", "permitted")}}}))
    wrapper.drop_capability(str(config), process_only=False)
    written = json.loads(config.read_text())
    assert written["ociVersion"] == "1.0.2"
    assert all(names == ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]
               for names in written["process"]["capabilities"].values())
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh"], "capabilities": {"bounding": capabilities}}))
    wrapper.drop_capability(str(process), process_only=True)
    assert json.loads(process.read_text())["capabilities"]["bounding"] == ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]


@pytest.mark.parametrize(("arguments", "expected"), [
    (["--root", "/r", "create", "--bundle", "/b", "id"], "/b"),
    (["create", "--bundle=/b", "id"], "/b"),
    (["exec", "-p", "/p.json", "id"], None),
])
def test_runc_wrapper_finds_the_bundle_option(arguments, expected):
    assert _runc_wrapper().option_value(arguments, "--bundle", "-b") == expected
