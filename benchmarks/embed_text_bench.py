"""Section 7: what the embedded text costs and buys: tokens, in-process speed and cluster quality.

The end-to-end rate on the defaults is the embedding model's rate, and that model's cost grows with the
tokens it reads. This section measures, for each embed-text mode and token budget the gateway
offers, the mean tokens per conversation, the default backend's in-process rate on those texts, and
the agreement (AMI) of the clustering service's base clusters with the topic labels of a labelled
generated set (``briefxai_sampledata``, a seed no other section uses), averaged over clustering
seeds: once with the automatic k, once with k = the number of labels. The backend is the embedding
service's default (its settings), the clustering pipeline is the service's, without the 2-D map and
with the privacy thresholds at 1 so that every conversation is scored.

``python -m benchmarks.embed_text_bench --conversations 2000 --seeds 5`` prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import REPO

DATA_SEED = 7
# (mode, token budget): the default first, then other conversation cuts, then cheaper modes.
SETTINGS: tuple[tuple[str, int], ...] = (
    ("conversation", 64),
    ("conversation", 32),
    ("conversation", 128),
    ("conversation", 256),
    ("user_messages", 64),
    ("first_user_message", 64),
)
SMOKE_SETTINGS: tuple[tuple[str, int], ...] = (("conversation", 64), ("first_user_message", 64))


def measure(conversations: int, seeds: int, settings: Sequence[tuple[str, int]]) -> dict[str, Any]:
    from sklearn.metrics import adjusted_mutual_info_score

    from briefxai_clustering.model import ClusteringInput, ClusteringParams
    from briefxai_clustering.pipeline import ClusteringPipeline, PipelineConfig
    from briefxai_clustering.settings import ClusteringSettings
    from briefxai_embedding.backends import create_backend
    from briefxai_embedding.onnx_export import bundled_model_path
    from briefxai_embedding.settings import EmbeddingSettings
    from briefxai_embedding.token_cut import TokenCutter
    from briefxai_gateway.embed_text import char_budget, embed_text
    from briefxai_gateway.models import Conversation, EmbedTextMode, Message
    from briefxai_sampledata import iter_conversations

    items = list(iter_conversations(conversations, DATA_SEED))
    labels = [str(item["metadata"]["label"]) for item in items]
    parsed = [
        Conversation(
            id=str(item["id"]),
            user_id=str(item.get("user_id", "")),
            messages=[Message(m["role"], m["content"]) for m in item["messages"]],
        )
        for item in items
    ]
    ids = [c.id for c in parsed]
    user_ids = [c.user_id for c in parsed]
    embedding_settings = EmbeddingSettings.load()
    cutter = TokenCutter.from_file(bundled_model_path() / "tokenizer.json")
    pipeline = ClusteringPipeline(PipelineConfig.from_settings(ClusteringSettings.load()))
    n_labels = len(set(labels))

    async def embed_all() -> list[dict[str, Any]]:
        backend = create_backend(embedding_settings)
        await backend.load()
        try:
            rows = []
            for mode, budget in settings:
                texts = [embed_text(c, EmbedTextMode(mode), char_budget(budget)).text for c in parsed]
                texts = cutter.cut(texts, budget)[0]
                await backend.embed(texts[:32])  # warm-up
                began = time.perf_counter()
                result = await backend.embed(texts)
                seconds = time.perf_counter() - began
                rows.append(
                    {
                        "mode": mode,
                        "token_budget": budget,
                        "mean_chars": round(statistics.fmean(len(t) for t in texts), 1),
                        "mean_tokens": round(statistics.fmean(result.token_counts), 1),
                        "texts_per_second": round(len(texts) / seconds, 1),
                        "tokens_per_second": round(sum(result.token_counts) / seconds),
                        "vectors": result.vectors,
                    }
                )
            return rows
        finally:
            await backend.close()

    rows = asyncio.run(embed_all())
    for row in rows:
        vectors = row.pop("vectors")
        for key, k in (("ami_auto_k", 0), ("ami_k_labels", n_labels)):
            scores = []
            for seed in range(1, seeds + 1):
                params = ClusteringParams(
                    k=k, seed=seed, skip_map=True, min_cluster_size=1, min_distinct_users=1
                )
                result = pipeline.run(ClusteringInput(vectors, ids, user_ids), params)
                predicted = {a.conversation_id: a.cluster_id for a in result.assignments}
                scores.append(adjusted_mutual_info_score(labels, [predicted[i] for i in ids]))
            row[key] = round(statistics.fmean(scores), 3)
            row[key + "_sd"] = round(statistics.pstdev(scores), 3)
    return {
        "conversations": conversations,
        "labels": n_labels,
        "data_seed": DATA_SEED,
        "clustering_seeds": seeds,
        "backend": f"{embedding_settings.backend}"
        + (f"-{embedding_settings.onnx_precision}" if embedding_settings.backend == "onnx" else ""),
        "batch_size": embedding_settings.batch_size,
        "rows": rows,
    }


def run(conversations: int, seeds: int, smoke: bool) -> dict[str, Any]:
    """One fresh process, so that this section's model and numba state do not linger in the driver."""
    command = [sys.executable, "-m", "benchmarks.embed_text_bench", "--conversations", str(conversations)]
    command += ["--seeds", str(seeds)] + (["--smoke"] if smoke else [])
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"embed_text_bench failed ({completed.returncode}): {completed.stderr[-2000:]}")
    # The backend logs to stdout before the report: the report is the last line.
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    for row in report["rows"]:
        print(
            f"  embed text {row['mode']}/{row['token_budget']}: {row['mean_tokens']} tokens, "
            f"{row['texts_per_second']} texts/s, AMI {row['ami_auto_k']} (auto k)",
            file=sys.stderr,
            flush=True,
        )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embed_text_bench", description=__doc__)
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=5, help="clustering seeds averaged per setting")
    parser.add_argument("--smoke", action="store_true", help="two settings only")
    args = parser.parse_args(argv)
    settings = SMOKE_SETTINGS if args.smoke else SETTINGS
    print(json.dumps(measure(args.conversations, args.seeds, settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
