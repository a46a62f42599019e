"""The `seqserve-client` package installs alone (grpcio, protobuf, numpy; nothing of the server) into a fresh venv
and streams to a real server, through the SDK and the `seqserve-client` command.

Offline: the client's wheel is built here (the test venv's setuptools), the fresh venv gets pip from `ensurepip`
and sees only the files of the client's declared dependencies (and theirs), linked from the test venv; `pip check`
then proves they are all it needs.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.service.grpc.conftest import start_server  # noqa: F401  (the fixture)
from tests.service.grpc.helpers import RunningServer

MODEL = "vowels_lstm"
DEPENDENCIES = ("grpcio", "protobuf", "numpy", "typing_extensions")  # typing_extensions: grpcio's own
STREAM = """
import sys
import numpy as np
from seqserve_client import Client
x = np.load(sys.argv[2])
with Client(sys.argv[1]) as client, client.stream("vowels_lstm") as stream:
    pieces = [stream.send(x[i:i + 5])["logits"] for i in range(0, len(x), 5)]
np.save(sys.argv[3], np.concatenate(pieces))
try:
    import service  # noqa: F401
except ImportError:
    print("no server code")
"""


def link_distribution(name: str, into: Path) -> None:
    """Every file the installed distribution `name` owns (its RECORD), linked under `into`."""
    dist = importlib.metadata.distribution(name)
    for file in dist.files or ():
        source = Path(str(dist.locate_file(file)))
        if not source.is_file() or file.parts[0] == "..":  # console scripts live outside site-packages
            continue
        target = into / file
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(source)


@pytest.fixture(scope="module")
def client_venv(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("client-venv")
    wheels, deps, env_dir = root / "wheels", root / "deps", root / "venv"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), str(repo_root / "client")], check=True, env=clean_env())
    for name in DEPENDENCIES:
        link_distribution(name, deps)
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "client-deps.pth").write_text(f"{deps}\n")
    wheel = next(wheels.glob("seqserve_client-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels),
                    str(wheel)], check=True, env=clean_env())
    return env_dir


def clean_env() -> dict[str, str]:
    """The environment without the test's PYTHONPATH (which points at this tree)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}


def test_the_client_installs_alone_with_only_its_declared_dependencies(client_venv: Path) -> None:
    python = client_venv / "bin" / "python"
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, env=clean_env())
    assert check.returncode == 0, check.stdout + check.stderr
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            check=True, env=clean_env()).stdout
    names = {line.split("==")[0].lower().replace("_", "-") for line in listed.split()}
    bootstrap = {"pip", "setuptools"}  # what ensurepip installs (setuptools up to Python 3.11)
    assert names - bootstrap == {"seqserve-client", "grpcio", "protobuf", "numpy", "typing-extensions"}


def test_the_installed_client_streams_to_a_real_server(
    client_venv: Path, start_server: Callable[..., RunningServer], tmp_path: Path  # noqa: F811
) -> None:
    server = start_server()
    x = np.random.default_rng(0).standard_normal((23, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run([str(client_venv / "bin" / "python"), "-c", STREAM, server.target, str(tmp_path / "x.npy"),
                          str(tmp_path / "y.npy")], cwd=tmp_path, capture_output=True, text=True, env=clean_env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "no server code"
    streamed = np.load(tmp_path / "y.npy")
    assert streamed.shape == (23, 9)
    whole = server.call(server.registry.get(MODEL).infer(x[None]))[0]["logits"][0]
    np.testing.assert_allclose(streamed, whole, rtol=1e-5, atol=1e-5)
    cli = subprocess.run([str(client_venv / "bin" / "seqserve-client"), "--target", server.target, "models"],
                         capture_output=True, text=True, env=clean_env())
    assert cli.returncode == 0, cli.stderr
    assert MODEL in cli.stdout
