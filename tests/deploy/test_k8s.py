"""The Kubernetes manifests (`deploy/k8s/`) validate offline against the API schemas, and describe the topology:
replicas on the shared Redis, a PodDisruptionBudget, an HPA on a seqserve metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.topology import REPO_ROOT

MANIFESTS = sorted((REPO_ROOT / "deploy" / "k8s").glob("*.yaml"))
KUBERNETES = "1.33.0"


def resources() -> dict[str, dict[str, Any]]:
    """Every resource of every manifest, by `kind/name`."""
    found = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_validates_strictly(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)  # raises with the reason


def test_manifests_describe_replicas_on_redis_with_a_disruption_budget_and_autoscaling() -> None:
    found = resources()
    assert set(found) == {"Deployment/seqserve", "Service/seqserve", "PodDisruptionBudget/seqserve",
                          "HorizontalPodAutoscaler/seqserve", "Deployment/seqserve-redis", "Service/seqserve-redis"}
    (container,) = found["Deployment/seqserve"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    redis_port = found["Service/seqserve-redis"]["spec"]["ports"][0]["port"]
    assert env["SEQSERVE_SESSION_STORE"] == f"redis://seqserve-redis:{redis_port}/0"
    assert found["PodDisruptionBudget/seqserve"]["spec"]["minAvailable"] == 1
    (metric,) = found["HorizontalPodAutoscaler/seqserve"]["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == "seqserve_active_sessions"  # a gauge the server exports
    assert "seqserve_active_sessions" in (REPO_ROOT / "service" / "engine" / "metrics.py").read_text()
