"""Feature flags (the ``features:`` block) and settings reloads: what changes live, what needs a restart,
and an invalid file that leaves the settings in force alone."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import grpc
import pytest
from pydantic_settings import SettingsConfigDict
from structlog.testing import capture_logs

from briefxai.common.v1 import common_pb2
from briefxai.facets.v1 import facets_pb2, facets_pb2_grpc
from briefxai_common.bootstrap import Service, reloader, start_service
from briefxai_common.config import ConfigError, ServiceSettings
from briefxai_common.features import FeatureFlags, Flag
from briefxai_common.reload import changed_keys
from tests.support.fake_openai import FakeOpenAI
from tests.support.http import get_json

FAST = Flag("fast_path", False, "A flag of the test service.")


class ReloadSettings(ServiceSettings):
    section: ClassVar[str] = "reloadable"
    model_config = SettingsConfigDict(
        env_prefix="BRIEFXAI_RELOADABLE_", env_nested_delimiter="__", extra="forbid"
    )
    batch_size: int = 8
    budget_seconds: float = 10.0


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_flags_take_configured_values_over_defaults() -> None:
    flags = FeatureFlags([FAST, Flag("other", True, "")], {"fast_path": True, "typo_flag": False})
    assert flags.enabled("fast_path") and flags.enabled("other")
    assert flags.unknown == ["typo_flag"]
    assert flags.update({"other": False}) == {"fast_path": False, "other": False}
    assert flags.snapshot() == {"fast_path": False, "other": False} and flags.unknown == []
    with pytest.raises(KeyError, match="never_declared"):
        flags.enabled("never_declared")
    with pytest.raises(ValueError, match="must match"):
        Flag("Bad-Name", True, "")


def test_features_block_section_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(
        tmp_path / "c.yaml",
        "features:\n  fast_path: true\n  shared: true\nreloadable:\n  features:\n    shared: false\n",
    )
    assert ReloadSettings.load(config).features == {"fast_path": True, "shared": False}
    monkeypatch.setenv("BRIEFXAI_RELOADABLE_FEATURES__FAST_PATH", "false")
    assert ReloadSettings.load(config).features == {"fast_path": False, "shared": False}


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("features:\n  fast_path: maybe\n", "features.fast_path"),
        ("features:\n  Fast-Path: true\n", "must match"),
    ],
)
def test_invalid_flags_are_config_errors(tmp_path: Path, block: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ReloadSettings.load(write(tmp_path / "c.yaml", block))


def test_changed_keys_are_dotted_leaves() -> None:
    old = ReloadSettings.load(None, features={"a": True})
    new = ReloadSettings.load(None, features={"a": False, "b": True}, batch_size=9)
    assert changed_keys(old, new) == ["batch_size", "features.a", "features.b"]


async def test_reload_applies_live_keys_reports_the_rest_and_rejects_an_invalid_file(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "reloadable:\n  host: 127.0.0.1\n  grpc_port: 0\n  http_port: 0\n")
    settings = ReloadSettings.load(config)
    hooked: list[tuple[float, frozenset[str]]] = []

    def hook(new: ReloadSettings, changed: frozenset[str]) -> list[str]:
        hooked.append((new.budget_seconds, changed))
        return ["budget_seconds"]

    service = Service("reloadable", settings, lambda server: [], features=FeatureFlags([FAST]), reload=hook)
    running = await start_service(service)
    reload = reloader(service, lambda: ReloadSettings.load(config), configure_logs=False)
    try:
        _, health = await get_json(running.http_port, "/health")
        assert health["features"] == {"fast_path": False}

        write(
            config,
            "features:\n  fast_path: true\n"
            "reloadable:\n  host: 127.0.0.1\n  grpc_port: 0\n  http_port: 0\n"
            "  budget_seconds: 2.5\n  batch_size: 64\n  log_level: debug\n",
        )
        with capture_logs() as logs:
            outcome = await reload.reload()
        assert outcome.accepted
        assert outcome.changed == ["batch_size", "budget_seconds", "features.fast_path", "log_level"]
        assert outcome.applied == ["budget_seconds", "features"]
        # Logs are the process's own (configure_logs=False here): with batch_size, left for a restart.
        assert outcome.needs_restart == ["batch_size", "log_level"]
        assert hooked == [(2.5, frozenset({"batch_size", "budget_seconds"}))]
        assert service.flags.enabled("fast_path")
        _, health = await get_json(running.http_port, "/health")
        assert health["features"] == {"fast_path": True}
        [line] = [entry for entry in logs if entry["event"] == "config_reloaded"]
        assert line["applied"] == ["budget_seconds", "features"] and line["features"] == {"fast_path": True}
        assert reload.current.budget_seconds == 2.5 and reload.current.batch_size == 8

        write(config, "reloadable:\n  batch_size: many\n")
        with capture_logs() as logs:
            rejected = await reload.reload()
        assert not rejected.accepted and "reloadable.batch_size" in rejected.error
        [line] = [entry for entry in logs if entry["event"] == "config_reload_rejected"]
        assert line["log_level"] == "error"
        assert service.flags.enabled("fast_path") and reload.current.budget_seconds == 2.5
        assert len(hooked) == 1
    finally:
        await running.stop(grace=0)


async def test_a_hook_that_refuses_rejects_the_whole_reload(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "reloadable:\n  budget_seconds: 1\n")
    settings = ReloadSettings.load(config)

    def hook(new: ReloadSettings, changed: frozenset[str]) -> list[str]:
        raise ValueError("budget_seconds: cannot be lowered while analyses wait")

    service = Service("reloadable", settings, lambda server: [], features=FeatureFlags([FAST]), reload=hook)
    reload = reloader(service, lambda: ReloadSettings.load(config), configure_logs=False)
    write(config, "features:\n  fast_path: true\nreloadable:\n  budget_seconds: 3\n")
    outcome = await reload.reload()
    assert not outcome.accepted and "cannot be lowered" in outcome.error
    assert not service.flags.enabled("fast_path") and reload.current.budget_seconds == 1


async def test_a_facets_reload_swaps_in_a_new_provider_chain(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """The facets service's hook: changed provider settings build, start and swap in a new chain; calls
    go to the new providers at once; custom facets are left for a restart."""
    from briefxai_facets.server import build_service as build_facets
    from briefxai_facets.settings import FacetsSettings

    local = "facets:\n  host: 127.0.0.1\n  grpc_port: 0\n  http_port: 0\n  grace_period_seconds: 0\n"
    config = write(tmp_path / "c.yaml", local + "  providers: [heuristic]\n")
    service = build_facets(FacetsSettings.load(config))
    running = await start_service(service)
    reload = reloader(service, lambda: FacetsSettings.load(config), configure_logs=False)
    try:
        write(
            config,
            local
            + "  providers: [openai, heuristic]\n"
            + f"  openai: {{base_url: '{fake_openai.base_url}', model: m, timeout_seconds: 2}}\n"
            + "  custom_facets: [{name: product, question: 'Which product?', type: text}]\n",
        )
        outcome = await reload.reload()
        assert outcome.accepted and outcome.applied == ["openai", "providers"]
        assert outcome.needs_restart == ["custom_facets"]
        _, health = await get_json(running.http_port, "/health")
        assert health["provider_order"] == ["openai:m", "heuristic"] and "product" not in health["facets"]
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = facets_pb2_grpc.FacetsServiceStub(channel)
            conversation = common_pb2.Conversation(
                id="c", messages=[common_pb2.Message(role=common_pb2.ROLE_USER, content="refund my order")]
            )
            reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[conversation]))
        assert reply.results[0].values and fake_openai.requests_to("chat")

        write(config, local + "  providers: [nowhere]\n")
        rejected = await reload.reload()
        assert not rejected.accepted and "nowhere" in rejected.error
        _, health = await get_json(running.http_port, "/health")
        assert health["provider_order"] == ["openai:m", "heuristic"]
    finally:
        await running.stop(grace=0)
