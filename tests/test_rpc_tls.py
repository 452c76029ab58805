"""TLS and mutual TLS from certificate files (a throwaway CA made with the openssl CLI)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import grpc
import pytest
from rpc_servicer import serving

from veil.rpc import ChannelConfig, open_channel
from veil.v1 import anonymizer_pb2, anonymizer_pb2_grpc

LEAF_EXTENSIONS = ("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "1", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            cwd=directory)


def make_leaf(directory: Path, name: str, ca: str) -> None:
    (directory / "leaf.ext").write_text(LEAF_EXTENSIONS)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", "leaf.ext", cwd=directory)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    make_ca(directory, "ca")
    make_leaf(directory, "server", "ca")
    make_leaf(directory, "client", "ca")
    make_ca(directory, "rogue-ca")
    make_leaf(directory, "rogue-client", "rogue-ca")
    return directory


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def call(channel: grpc.aio.Channel) -> anonymizer_pb2.ModelInfo | grpc.StatusCode:
    try:
        return await anonymizer_pb2_grpc.AnonymizerStub(channel).GetModelInfo(
            anonymizer_pb2.GetModelInfoRequest(), timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()


def client(pki: Path, ca: str = "ca", cert: str | None = None) -> ChannelConfig:
    return ChannelConfig(tls_ca_file=str(pki / f"{ca}.pem"),
                         tls_cert_file=str(pki / f"{cert}.pem") if cert else None,
                         tls_key_file=str(pki / f"{cert}.key") if cert else None,
                         retry_max_attempts=1)


def test_tls(pki: Path) -> None:
    async def scenario() -> None:
        async with serving(tls_cert_file=str(pki / "server.pem"), tls_key_file=str(pki / "server.key")) as server:
            target = f"127.0.0.1:{server.port}"
            async with open_channel(target, client(pki)) as ch:
                info = await call(ch)
                assert isinstance(info, anonymizer_pb2.ModelInfo) and info.model_version
                assert info.device == ""  # no client certificate presented
            async with grpc.aio.insecure_channel(target) as ch:
                assert await call(ch) == grpc.StatusCode.UNAVAILABLE
            async with open_channel(target, client(pki, ca="rogue-ca")) as ch:  # server not trusted
                assert await call(ch) == grpc.StatusCode.UNAVAILABLE
    run(scenario())


def test_mutual_tls_requires_a_client_certificate_from_the_ca(pki: Path) -> None:
    async def scenario() -> None:
        async with serving(tls_cert_file=str(pki / "server.pem"), tls_key_file=str(pki / "server.key"),
                           tls_client_ca_file=str(pki / "ca.pem")) as server:
            target = f"127.0.0.1:{server.port}"
            async with open_channel(target, client(pki, cert="client")) as ch:
                info = await call(ch)
                assert isinstance(info, anonymizer_pb2.ModelInfo)
                assert info.device == "client"  # the servicer sees the client certificate's CN
            async with open_channel(target, client(pki)) as ch:  # no client certificate
                assert await call(ch) == grpc.StatusCode.UNAVAILABLE
            async with open_channel(target, client(pki, cert="rogue-client")) as ch:
                assert await call(ch) == grpc.StatusCode.UNAVAILABLE
            async with grpc.aio.insecure_channel(target) as ch:
                assert await call(ch) == grpc.StatusCode.UNAVAILABLE
    run(scenario())
