"""TLS end to end through Debian's nginx and the repository's deploy/nginx.conf: clients speak TLS to nginx, nginx
speaks TLS to the replicas (`grpc_pass grpcs://`) and presents a client certificate they require (mTLS). Streams
through it equal their whole-sequence runs; a client that does not trust the CA is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from seqserve_client import Client, Security, ServerError
from tests.deploy.check_results import TOLERANCE, open_runs
from tests.deploy.topology import Balancer, Replica, nginx_binary
from tests.service.grpc.certs import Certs, make_certs


@pytest.fixture
def tls_topology(tmp_path: Path, models_root: Path) -> Iterator[tuple[Certs, Replica, Balancer]]:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed and could not be (make test installs Debian's nginx when root)")
    certs = make_certs(tmp_path / "certs")
    flags = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
             "--tls-client-ca", str(certs.ca)]
    probe = Security(ca=certs.ca, cert=certs.client_cert, key=certs.client_key)
    replica = Replica(models_root, *flags, security=probe)
    balancer = None
    try:
        balancer = Balancer(tmp_path, [replica.target], binary, certs)
        yield certs, replica, balancer
    finally:
        if balancer is not None:
            balancer.stop()
        replica.stop()


def test_streams_through_nginx_over_tls_and_mtls_equal_whole_runs(tls_topology: tuple[Certs, Replica, Balancer]
                                                                  ) -> None:
    certs, replica, balancer = tls_topology
    with Client(balancer.target, security=Security(ca=certs.ca)) as client:
        runs = open_runs(client, 4)
        for run in runs:
            run.step()
        assert max(run.finish() for run in runs) <= TOLERANCE
    with Client(balancer.target, security=Security(ca=certs.stranger_ca)) as client, pytest.raises(ServerError):
        client.models()
    with Client(replica.target, security=Security(ca=certs.ca)) as client, pytest.raises(ServerError):
        client.models()  # the replica itself requires a client certificate
    assert "[emerg]" not in balancer.log
