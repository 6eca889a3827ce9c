"""Embedding settings: defaults, YAML section, env overrides, and the process entry point's config errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from briefxai_common.config import ConfigError
from briefxai_embedding.backends import create_backend
from briefxai_embedding.backends.onnx import OnnxBackend
from briefxai_embedding.backends.openai import OpenAIBackend
from briefxai_embedding.backends.sentence_transformers import SentenceTransformersBackend
from briefxai_embedding.settings import EmbeddingSettings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIEFXAI_CONFIG", raising=False)
    for name in list(os.environ):
        if name.startswith("BRIEFXAI_EMBEDDING_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = EmbeddingSettings.load()
    assert (settings.grpc_port, settings.http_port, settings.backend) == (50052, 9092, "onnx")
    assert (settings.max_texts_per_request, settings.max_chars_per_text, settings.batch_size) == (
        2048,
        20000,
        16,
    )
    assert settings.torch_threads == 0
    assert settings.resolved_torch_threads() == len(os.sched_getaffinity(0))
    assert (settings.onnx_precision, settings.onnx_parallel_runs) == ("int8-static", 0)
    assert settings.openai.api_key_env == "OPENAI_API_KEY"
    assert settings.openai.dimensions is None


def test_yaml_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text(
        "embedding:\n  backend: openai\n  batch_size: 16\n  openai:\n    model: nomic-embed-text\n    dimensions: 64\n"
    )
    monkeypatch.setenv("BRIEFXAI_CONFIG", str(config))
    monkeypatch.setenv("BRIEFXAI_EMBEDDING_BATCH_SIZE", "128")
    monkeypatch.setenv("BRIEFXAI_EMBEDDING_OPENAI__BASE_URL", "http://ollama:11434/v1")
    monkeypatch.setenv("BRIEFXAI_EMBEDDING_TORCH_THREADS", "3")
    settings = EmbeddingSettings.load()
    assert settings.backend == "openai"
    assert settings.batch_size == 128
    assert settings.resolved_torch_threads() == 3
    assert settings.openai.model == "nomic-embed-text"
    assert settings.openai.dimensions == 64
    assert settings.openai.base_url == "http://ollama:11434/v1"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"backend": "tpu"}, "embedding.backend"),
        ({"batch_size": 0}, "embedding.batch_size"),
        ({"onnx_precision": "int4"}, "embedding.onnx_precision"),
        ({"onnx_parallel_runs": -1}, "embedding.onnx_parallel_runs"),
        ({"max_texts_per_request": 0}, "embedding.max_texts_per_request"),
        ({"openai": {"timeout_seconds": 0}}, "embedding.openai.timeout_seconds"),
        ({"openai": {"unknown": 1}}, "embedding.openai.unknown"),
    ],
)
def test_bad_values_name_the_key(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        EmbeddingSettings.load(**overrides)


def test_create_backend_picks_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    onnx = create_backend(EmbeddingSettings.load(batch_size=8, torch_threads=1))
    assert isinstance(onnx, OnnxBackend)
    assert onnx.backend == "onnx"
    assert onnx.memory_arena is True
    assert (onnx.precision, onnx.intra_op_threads, onnx.parallel_runs) == ("int8-static", 1, 1)
    two_lanes = create_backend(EmbeddingSettings.load(torch_threads=2, onnx_parallel_runs=0))
    assert isinstance(two_lanes, OnnxBackend)
    assert (two_lanes.intra_op_threads, two_lanes.parallel_runs) == (2, 2)
    dynamic = create_backend(EmbeddingSettings.load(onnx_precision="int8", onnx_parallel_runs=1))
    assert isinstance(dynamic, OnnxBackend)
    assert (dynamic.precision, dynamic.parallel_runs) == ("int8", 1)
    no_arena = create_backend(EmbeddingSettings.load(onnx_memory_arena=False))
    assert isinstance(no_arena, OnnxBackend)
    assert no_arena.memory_arena is False
    torch_backend = create_backend(EmbeddingSettings.load(backend="torch", batch_size=8, torch_threads=1))
    assert isinstance(torch_backend, SentenceTransformersBackend)
    assert (torch_backend.batch_size, torch_backend.torch_threads) == (8, 1)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert isinstance(create_backend(EmbeddingSettings.load(backend="openai")), OpenAIBackend)
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        create_backend(EmbeddingSettings.load(backend="openai"))


def test_entry_point_reports_config_errors_and_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFXAI_") and k != "OPENAI_API_KEY"}
    env["BRIEFXAI_EMBEDDING_BACKEND"] = "openai"
    result = subprocess.run(
        [sys.executable, "-m", "briefxai_embedding"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "OPENAI_API_KEY is not set" in result.stderr
