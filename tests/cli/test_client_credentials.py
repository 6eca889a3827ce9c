"""The CLI's credentials against a real gateway (in-process, TLS on, auth on, its bootstrap admin key from
a file, no downstream services: analyses wait for them): ``GatewayClient`` sends the API key on unary,
server-streaming and client-streaming calls and speaks TLS with the CA given; the ``briefxai`` commands
find the key in --api-key, $BRIEFXAI_API_KEY or <data dir>/admin.key, and the CA in --ca-cert."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import GatewayClient, build_options
from briefxai_cli.inputs import ConversationRecord, Message
from briefxai_cli.main import cli, is_local_address
from briefxai_common.apikeys import generate_api_key
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_gateway.server import build_gateway
from briefxai_gateway.settings import GatewaySettings
from tests.support.certs import Certificates, make_certificates
from tests.support.ports import free_port

RECORDS = [ConversationRecord(f"c{i}", "u", (Message("user", f"hello {i}"),), {}, i + 1) for i in range(3)]


@dataclass
class SecureGateway:
    running: RunningService
    certs: Certificates
    key: str
    data_dir: Path

    @property
    def address(self) -> str:
        return self.running.address


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[SecureGateway]:
    certs = make_certificates(tmp_path / "certs")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    key = generate_api_key()
    (data_dir / "admin.key").write_text(key + "\n")
    settings = GatewaySettings.load(
        host="127.0.0.1",
        grpc_port=0,
        http_port=0,
        grace_period_seconds=0,
        store_url=f"sqlite:///{tmp_path}/gateway.db",
        embedding_address=f"127.0.0.1:{free_port()}",
        facets_address=f"127.0.0.1:{free_port()}",
        clustering_address=f"127.0.0.1:{free_port()}",
        tls={"cert_file": str(certs.server.cert), "key_file": str(certs.server.key)},
        auth={"mode": "on", "bootstrap_admin_key_file": str(data_dir / "admin.key")},
    )
    service, _ = build_gateway(settings)
    running = await start_service(service)
    yield SecureGateway(running, certs, key, data_dir)
    await running.stop(grace=0)


def every_kind_of_call(client: GatewayClient) -> gateway_pb2.Analysis:
    """Unary (create, get, list, cancel), client-streaming (upload) and server-streaming (watch) calls."""
    created = client.create(RECORDS, build_options(seed=1))
    uploaded = client.create(RECORDS, build_options(seed=2), stream=True)
    assert {a.id for a in client.list()} >= {created.id, uploaded.id}
    first = next(iter(client.watch(uploaded.id)))
    assert first.analysis.id == uploaded.id
    client.cancel(created.id)
    return client.get(created.id)


async def test_the_key_goes_with_every_call_over_tls(gateway: SecureGateway) -> None:
    ca = str(gateway.certs.ca)

    def with_key() -> gateway_pb2.Analysis:
        with GatewayClient(gateway.address, api_key=gateway.key, ca_file=ca) as client:
            return every_kind_of_call(client)

    assert (await asyncio.to_thread(with_key)).state == gateway_pb2.ANALYSIS_STATE_CANCELLED

    def refused(client_args: dict[str, str]) -> grpc.StatusCode:
        client = GatewayClient(
            gateway.address, api_key=client_args.get("api_key"), ca_file=client_args.get("ca_file")
        )
        with client, pytest.raises(grpc.RpcError) as error:
            list(client.list())
        assert isinstance(error.value, grpc.Call)
        return error.value.code()

    assert await asyncio.to_thread(refused, {"ca_file": ca}) == grpc.StatusCode.UNAUTHENTICATED
    wrong = {"ca_file": ca, "api_key": generate_api_key()}
    assert await asyncio.to_thread(refused, wrong) == grpc.StatusCode.UNAUTHENTICATED
    plaintext = {"api_key": gateway.key}
    assert await asyncio.to_thread(refused, plaintext) == grpc.StatusCode.UNAVAILABLE


async def test_the_cli_finds_its_key_and_ca(gateway: SecureGateway, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["list", "--json", "--gateway", gateway.address, "--ca-cert", str(gateway.certs.ca)]

    def run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
        result = runner.invoke(cli, args, env={"BRIEFXAI_API_KEY": None, "BRIEFXAI_DATA_DIR": None, **env})
        return result.exit_code, result.output

    empty = tmp_path / "empty"
    empty.mkdir()
    # The local admin key, as `briefxai up` leaves it in its data dir.
    assert (await asyncio.to_thread(run, base, {"BRIEFXAI_DATA_DIR": str(gateway.data_dir)}))[0] == 0
    # The environment, and the option, over the file.
    assert (await asyncio.to_thread(run, base, {"BRIEFXAI_API_KEY": gateway.key}))[0] == 0
    assert (await asyncio.to_thread(run, [*base, "--api-key", gateway.key], {}))[0] == 0
    bad = {"BRIEFXAI_DATA_DIR": str(gateway.data_dir), "BRIEFXAI_API_KEY": generate_api_key()}
    code, output = await asyncio.to_thread(run, base, bad)
    assert code == 1 and "UNAUTHENTICATED" in output, output
    # No key anywhere (a data dir without admin.key).
    code, output = await asyncio.to_thread(run, base, {"BRIEFXAI_DATA_DIR": str(empty)})
    assert code == 1 and "UNAUTHENTICATED" in output, output


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1:50051", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("10.0.0.7:50051", False),
        ("gateway.briefxai.svc:50051", False),
        ("dns:///gateway:50051", False),
    ],
)
def test_the_local_admin_key_goes_to_local_gateways_only(address: str, local: bool) -> None:
    assert is_local_address(address) is local
