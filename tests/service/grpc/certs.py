"""Test certificates, made at test time with `trustme` (no key is ever committed): a CA, the server's certificate
for 127.0.0.1 / localhost, a client certificate, and a second CA nobody trusts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA both sides trust
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_ca: Path  # a CA that signed nothing of ours
    stranger_cert: Path  # a client certificate from it
    stranger_key: Path


def make_certs(folder: Path) -> Certs:
    folder.mkdir(parents=True, exist_ok=True)
    ca, stranger = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client, foreign = ca.issue_cert("client.example"), stranger.issue_cert("client.example")
    paths = {
        "ca": ca.cert_pem, "server_cert": server.cert_chain_pems[0], "server_key": server.private_key_pem,
        "client_cert": client.cert_chain_pems[0], "client_key": client.private_key_pem,
        "stranger_ca": stranger.cert_pem, "stranger_cert": foreign.cert_chain_pems[0],
        "stranger_key": foreign.private_key_pem,
    }
    for name, blob in paths.items():
        blob.write_to_path(str(folder / f"{name}.pem"))
    return Certs(**{name: folder / f"{name}.pem" for name in paths})
