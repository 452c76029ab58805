"""`python -m veil_tools.localrun` (`make run`): the three services on loopback, a dev token, SIGTERM
stops them all."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from services.anonymizer import config as anonymizer_config
from services.gateway import config as gateway_config
from services.unlearner import config as unlearner_config
from veil.client import GatewayClient
from veil.errors import FailedPrecondition
from veil_tools.localrun import DEV_TENANT, ROOT, SERVICES, dev_token, scrape_metrics
from veil.rpc.config import parse_address
from veil.v1 import anonymizer_pb2, anonymizer_pb2_grpc, unlearner_pb2, unlearner_pb2_grpc


def test_default_ports_are_the_services_own() -> None:
    modules = {"anonymizer": anonymizer_config, "gateway": gateway_config,
               "unlearner": unlearner_config}
    for spec in SERVICES:
        module = modules[spec.name]
        assert spec.grpc_port == parse_address("grpc", module.GRPC_ADDRESS)[1]
        assert spec.metrics_port == module.METRICS_PORT


def test_dev_token_is_written_once_and_kept(tmp_path: Path) -> None:
    tokens = tmp_path / "var" / "tokens.json"
    token = dev_token(tokens)
    assert dev_token(tokens) == token and len(token) >= 16
    assert json.loads(tokens.read_text()) == {token: DEV_TENANT}
    assert tokens.stat().st_mode & 0o777 == 0o600
    # Other tenants' tokens in the file are kept; the dev token is added beside them.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"token-of-acme-0123456789": "acme"}))
    added = dev_token(other)
    assert json.loads(other.read_text()) == {"token-of-acme-0123456789": "acme", added: DEV_TENANT}
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(FailedPrecondition, match="not JSON"):
        dev_token(broken)
    assert broken.read_text() == "{not json"


def _refuses(target: str) -> bool:
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except OSError:
        return True


def assert_internal_services_need_the_secret(var: Path, internal_targets: list[str]) -> None:
    """Another local process naming tenant dev is refused by the anonymizer and the unlearner;
    with the secret of the launcher's state folder (owner-only) it is served."""
    secret_file = var / "internal.token"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    anonymizer_target, unlearner_target = internal_targets
    calls = {
        anonymizer_target: lambda ch, md: list(anonymizer_pb2_grpc.AnonymizerStub(ch).Anonymize(
            anonymizer_pb2.AnonymizeRequest(), metadata=md, timeout=10)),
        unlearner_target: lambda ch, md: unlearner_pb2_grpc.UnlearnerStub(ch).ListModels(
            unlearner_pb2.ListModelsRequest(), metadata=md, timeout=10),
    }
    for target, call in calls.items():
        with grpc.insecure_channel(target) as channel:
            for metadata in ([("x-veil-tenant", DEV_TENANT)],
                             [("x-veil-tenant", DEV_TENANT), ("x-veil-internal-token", "guess")]):
                with pytest.raises(grpc.RpcError) as refused:
                    call(channel, metadata)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, target
            try:
                call(channel, [("x-veil-tenant", DEV_TENANT), ("x-veil-internal-token", secret)])
            except grpc.RpcError as exc:  # the request itself may be refused, the caller is not
                assert exc.code() != grpc.StatusCode.UNAUTHENTICATED, (target, exc.details())


def test_run_serves_until_sigterm(tiny_model_dir: Path, tmp_path: Path, face_png) -> None:
    var = tmp_path / "var"
    process = subprocess.Popen(
        [sys.executable, "-m", "veil_tools.localrun", "--var", str(var), "--free-ports",
         "--model", str(tiny_model_dir)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "VEIL_SAMPLING_STEPS": "2"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        printed = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            printed.append(line)
            if line.startswith("Ctrl-C stops them."):
                break
        text = "".join(printed)
        assert "Ctrl-C stops them." in text, text
        target = re.search(r"VEIL_GATEWAY_TARGET=(\S+)", text).group(1)  # type: ignore[union-attr]
        token = re.search(r"VEIL_TOKEN=(\S+)", text).group(1)  # type: ignore[union-attr]
        targets = re.findall(r"^  (?:anonymizer|unlearner|gateway) +(\S+) ", text, re.MULTILINE)
        metrics_urls = re.findall(r"metrics (http://\S+)", text)
        assert len(targets) == 3 and len(metrics_urls) == 3 and target in targets

        assert json.loads((var / "tokens.json").read_text()) == {token: DEV_TENANT}
        assert (var / "gateway.db").is_file() and (var / "unlearner.db").is_file()
        with GatewayClient(target, token) as client:
            image = client.upload_image(face_png[0], subject_id="alice")
            assert (var / "objects" / image.object.bucket / "tenants" / DEV_TENANT).is_dir()
            assert list(client.list_sessions()) == []
            # The gateway presents the run's internal secret: a round is generated.
            session = client.create_session("alice", image, protect=["Male"], candidates=2)
            assert session.session_id
        for url in metrics_urls:
            assert scrape_metrics(url)[("veil_gpu_available", ())] == 0.0
        assert_internal_services_need_the_secret(var, targets[:2])

        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=90)[0]
        assert process.returncode == 0, rest
        assert rest.rstrip().endswith("stopped.")
        assert all(_refuses(t) for t in targets)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
