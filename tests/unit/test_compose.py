"""docker-compose.yml, read without a Docker engine: one node by default, a 3-node cluster
under the `cluster` profile, ports on localhost only, one pinned image."""

from pathlib import Path

import yaml

COMPOSE = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
NODES = ["qdrant-node1", "qdrant-node2", "qdrant-node3"]


def test_default_is_one_node_and_the_cluster_is_a_profile():
    assert [n for n, s in SERVICES.items() if "profiles" not in s] == ["qdrant"]
    assert all(SERVICES[n]["profiles"] == ["cluster"] for n in NODES)
    assert "QDRANT__CLUSTER__ENABLED" not in SERVICES["qdrant"]["environment"]


def test_cluster_nodes_enable_distributed_mode_and_join_through_node1():
    for node in NODES:
        service = SERVICES[node]
        assert service["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        assert f"--uri http://{node}:6335" in service["command"]
        assert service["volumes"][0].split(":")[0] == node  # a volume of its own
    assert "--bootstrap" not in SERVICES["qdrant-node1"]["command"]
    for node in NODES[1:]:
        assert "--bootstrap http://qdrant-node1:6335" in SERVICES[node]["command"]
        assert SERVICES[node]["depends_on"]["qdrant-node1"]["condition"] == "service_healthy"


def test_published_ports_are_localhost_only_and_do_not_collide():
    ports = [p for s in SERVICES.values() for p in s.get("ports", [])]
    assert all(p.startswith("127.0.0.1:") for p in ports)
    assert len({p.split(":")[1] for p in ports}) == len(ports)


def test_every_node_runs_the_same_pinned_image_with_the_key_passed_through():
    images = {s["image"] for s in SERVICES.values()}
    assert len(images) == 1 and not images.pop().endswith(":latest")
    assert all("QDRANT__SERVICE__API_KEY" in s["environment"] for s in SERVICES.values())
    assert all("healthcheck" in s for s in SERVICES.values())


def test_the_pinned_server_and_the_clients_allowed_range_are_within_one_minor():
    """qdrant-client warns (and may fail) against a server more than one minor apart: every
    client release pyproject.toml admits must be within one minor of the pinned image."""
    import re

    from packaging.requirements import Requirement
    from packaging.version import Version

    (image,) = {s["image"] for s in SERVICES.values()}
    server = Version(image.rpartition(":v")[2])
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()  # tomllib: 3.11+
    (line,) = re.findall(r'^\s*"(qdrant-client[^"]*)"', text, re.M)
    client = Requirement(line)
    admitted = [m for m in range(0, 100) if client.specifier.contains(f"1.{m}.0") or
                client.specifier.contains(f"1.{m}.99")]  # fmt: skip
    assert admitted, client
    assert server.major == 1 and all(abs(m - server.minor) <= 1 for m in admitted), (
        f"server {server} and qdrant-client {client.specifier} are more than a minor apart"
    )


def test_the_cluster_profile_creates_collections_spread_over_its_nodes():
    """The cluster's commands in the file's comments use the server creation options."""
    text = (Path(__file__).parents[2] / "docker-compose.yml").read_text()
    assert "--shards 6 --replicas 2 --write-consistency 2" in text
    assert "lookalike copy" in text
