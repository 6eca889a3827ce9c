"""Cluster names before and after the phrase namer, on the bundled sample and the real chit-chat dev set.

For each data set the conversations are embedded in-process with the embedding service's default
backend (vectors cached under ``--cache``, so a second run embeds nothing), clustered by the clustering
service's pipeline (privacy thresholds at 1, no map) and named twice from the same input: by the
``KeywordNamer`` of commit ``KEYWORD_NAMER_COMMIT`` (read from git) and by today's namer. The embedded
text is a conversation's user messages (first 1,200 characters); the naming text their first 300.

Prints, per data set, a markdown table of the base clusters, largest first, with each cluster's most
common label::

    python -m benchmarks.naming_before_after [--top 15] [--dev briefxai-data/eval/chitchat_dev.jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import subprocess
import sys
import types
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO

KEYWORD_NAMER_COMMIT = "ba100a2"  # the last commit with the c-TF-IDF keyword namer
EMBED_CHARS = 1200
NAMING_CHARS = 300


@dataclass(frozen=True)
class DataSet:
    name: str
    ids: list[str]
    user_ids: list[str]
    labels: list[str]
    embed_texts: list[str]
    naming_texts: list[str]
    k: int  # 0 = automatic


def read_jsonl(path: Path, name: str, k: int) -> DataSet:
    ids: list[str] = []
    users: list[str] = []
    labels: list[str] = []
    embed: list[str] = []
    naming: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        user_text = "\n".join(m["content"] for m in item["messages"] if m["role"] == "user").strip()
        ids.append(str(item["id"]))
        users.append(str(item.get("user_id", "")))
        labels.append(str(item.get("metadata", {}).get("label", "")))
        embed.append(user_text[:EMBED_CHARS])
        naming.append(" ".join(user_text.split())[:NAMING_CHARS])
    return DataSet(name, ids, users, labels, embed, naming, k)


def embed(texts: Sequence[str], cache: Path) -> np.ndarray:
    """Vectors of ``texts`` by the embedding service's default backend, cached by the texts' hash."""
    from briefxai_embedding.backends import create_backend
    from briefxai_embedding.settings import EmbeddingSettings

    settings = EmbeddingSettings.load()
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
    path = cache / f"naming-{settings.backend}-{digest}.npy"
    if path.exists():
        return np.load(path)

    async def run() -> np.ndarray:
        backend = create_backend(settings)
        await backend.load()
        try:
            return (await backend.embed(list(texts))).vectors
        finally:
            await backend.close()

    vectors = asyncio.run(run())
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def keyword_namer_module() -> types.ModuleType:
    """The old naming module, loaded from git history."""
    source = subprocess.run(
        ["git", "show", f"{KEYWORD_NAMER_COMMIT}:services/clustering/briefxai_clustering/naming.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType("keyword_naming")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, "keyword_naming.py", "exec"), module.__dict__)  # noqa: S102  our own code from git history
    return module


class BothNamers:
    """Today's namer, which also runs the old keyword namer on the same input and keeps its names."""

    def __init__(self) -> None:
        from briefxai_clustering.naming import PhraseNamer

        self.new = PhraseNamer()
        self.old = keyword_namer_module().KeywordNamer()
        self.old_names: dict[str, str] = {}

    def name(
        self, texts: Sequence[str], vectors: np.ndarray, levels: Sequence[Sequence[Any]]
    ) -> dict[str, Any]:
        self.old_names = {key: label.name for key, label in self.old.name(texts, levels).items()}
        return self.new.name(texts, vectors, levels)


def table(data: DataSet, vectors: np.ndarray, top: int) -> str:
    from briefxai_clustering.model import ClusteringInput, ClusteringParams
    from briefxai_clustering.pipeline import ClusteringPipeline, PipelineConfig

    namer = BothNamers()
    params = ClusteringParams(
        k=data.k, hierarchy_depth=2, seed=1, skip_map=True, min_cluster_size=1, min_distinct_users=1
    )
    result = ClusteringPipeline(PipelineConfig(), namer).run(
        ClusteringInput(vectors, data.ids, data.user_ids, data.naming_texts), params
    )
    members: dict[str, list[str]] = {}
    for assignment, label in zip(result.assignments, data.labels, strict=True):
        members.setdefault(assignment.cluster_id, []).append(label)
    base = sorted((c for c in result.clusters if c.level == 0), key=lambda c: (-c.size, c.id))
    rows = [
        f"### {data.name}: {len(data.ids)} conversations, k = {result.k}; top {min(top, len(base))} "
        "base clusters",
        "",
        "| size | dominant label (share) | before (keywords) | after (phrases) |",
        "|---:|---|---|---|",
    ]
    for node in base[:top]:
        label, count = Counter(members[node.id]).most_common(1)[0]
        label = label if len(label) <= 60 else label[:57] + "..."
        share = f"{count / len(members[node.id]):.0%}"
        rows.append(
            f"| {node.size} | {label} ({share}) | {namer.old_names[node.id]} | {node.name} |".replace(
                "\n", " "
            )
        )
    upper = [c for c in result.clusters if c.level > 0]
    if upper:
        rows += ["", "Upper levels (after): " + "; ".join(f"{c.id} {c.name}" for c in upper)]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.naming_before_after", description=__doc__)
    parser.add_argument("--sample", type=Path, default=REPO / "examples" / "sample_conversations.jsonl")
    parser.add_argument("--dev", type=Path, default=REPO / "briefxai-data" / "eval" / "chitchat_dev.jsonl")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/briefxai-naming-vectors"))  # noqa: S108  a cache of public vectors, no secret
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--dev-k", type=int, default=34, help="base clusters on the dev set (34 labels)")
    args = parser.parse_args(argv)
    sets = [read_jsonl(args.sample, "sample", 0)]
    if args.dev.exists():
        sets.append(read_jsonl(args.dev, "chitchat dev", args.dev_k))
    else:
        print(f"{args.dev} not found: the dev set is skipped", file=sys.stderr)
    for data in sets:
        print(table(data, embed(data.embed_texts, args.cache), args.top))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
