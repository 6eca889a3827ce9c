"""The shipped example configuration loads into every service's settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.config import ServiceSettings
from briefxai_embedding.settings import EmbeddingSettings
from briefxai_facets.settings import FacetsSettings
from briefxai_gateway.settings import GatewaySettings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "briefxai.example.yaml"


@pytest.mark.parametrize(
    ("settings_class", "grpc_port"),
    [
        (GatewaySettings, 50051),
        (EmbeddingSettings, 50052),
        (FacetsSettings, 50053),
        (ClusteringSettings, 50054),
    ],
)
def test_example_config_loads(
    settings_class: type[ServiceSettings], grpc_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("BRIEFXAI_")]:
        monkeypatch.delenv(name)
    settings = settings_class.load(EXAMPLE)
    assert settings.grpc_port == grpc_port
