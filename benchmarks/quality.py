"""docs/quality.md: the measurements behind the analysis defaults, on real chats and on the sample.

``make quality`` (``python -m benchmarks.quality``) re-runs every table and rewrites the report with its
date and commit. It runs in-process on the product's own code: the gateway's text builder
(``embed_text.py``), the embedding service's default backend with its token cut, the heuristic facets
(for the ``request`` summary and the language facet), and the clustering service's pipeline.

Data:
- ``dev``: 2,873 real human chats with 34 topic labels (benchmarks/dev_data.py; the reserved held-out
  chats are never read), and ``dev-1k``: three random 1,000-chat subsets of it (the size of a typical
  first analysis);
- ``sample``: the bundled generated sample (400 conversations, 24 labels) and ``gen-2k``, 2,000
  generated conversations of another seed.

Every AMI/ARI is the mean over ``SEEDS`` clustering seeds, with the privacy thresholds at 1 so that
every conversation is scored (the privacy rule's own effect has a table of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score, silhouette_score

from benchmarks.common import REPO, git_revision, now_iso
from benchmarks.dev_data import load_dev_set

SEEDS = (1, 2, 3)
SAMPLE_FILE = REPO / "examples" / "sample_conversations.jsonl"
GENERATED_SEED = 11
REPORT = REPO / "docs" / "quality.md"
# What follows this line in docs/quality.md is written by hand (runs that need an LLM server) and kept.
KEEP_MARKER = "<!-- Sections below this line are written by hand; make quality keeps them. -->"
NAMES_SHOWN = 12
FloatArray = npt.NDArray[np.float32]


@dataclass
class DataSet:
    name: str
    records: list[dict[str, Any]]

    @property
    def labels(self) -> list[str]:
        return [str(r["metadata"]["label"]) for r in self.records]

    @property
    def n_labels(self) -> int:
        return len(set(self.labels))


@dataclass(frozen=True)
class View:
    """One way to represent a conversation as text: an embed-text mode and a token budget."""

    title: str
    mode: str  # an EmbedTextMode value, or "prefixed" (the former default's role prefixes)
    tokens: int


VIEWS = (
    View("former default: role prefixes, 256 tokens (1,200 chars)", "prefixed", 256),
    View("conversation, 256 tokens", "conversation", 256),
    View("conversation, 128 tokens", "conversation", 128),
    View("conversation, 96 tokens", "conversation", 96),
    View("**conversation, 64 tokens (default)**", "conversation", 64),
    View("conversation, 48 tokens", "conversation", 48),
    View("conversation, 32 tokens", "conversation", 32),
    View("user messages, 64 tokens", "user_messages", 64),
    View("first user message", "first_user_message", 64),
    View("`request` facet (heuristic summary)", "request_summary", 64),
)
DEFAULT_VIEW = VIEWS[4]


def load_sets() -> list[DataSet]:
    from briefxai_sampledata import generate

    sample = [json.loads(line) for line in SAMPLE_FILE.read_text(encoding="utf-8").splitlines() if line]
    return [
        DataSet("dev", load_dev_set()),
        DataSet("sample", sample),
        DataSet("gen-2k", generate(2000, GENERATED_SEED)),
    ]


# -- texts and vectors -------------------------------------------------------------------------------


def view_texts(records: Sequence[dict[str, Any]], view: View, requests: Sequence[str]) -> list[str]:
    from briefxai_gateway.embed_text import char_budget, embed_text
    from briefxai_gateway.models import Conversation, EmbedTextMode, FacetValue, Message

    texts = []
    for record, request in zip(records, requests, strict=True):
        messages = [Message(m["role"], m["content"]) for m in record["messages"]]
        if view.mode == "prefixed":
            prefix = {"user": "User: ", "assistant": "Assistant: "}
            joined = "\n".join(
                prefix[m.role] + " ".join(m.content.split()) for m in messages if m.role in prefix
            )
            texts.append(joined[:1200])
            continue
        conversation = Conversation(id=str(record["id"]), user_id="", messages=messages)
        facets = [FacetValue("request", text=request)] if request else []
        texts.append(
            embed_text(conversation, EmbedTextMode(view.mode), char_budget(view.tokens), facets).text
        )
    return texts


def heuristic_facets(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The heuristic provider's ``request`` and ``language`` per conversation."""
    from briefxai_facets.definitions import Conversation, FacetCatalog, Job, Message
    from briefxai_facets.heuristic import HeuristicAnalyzer
    from briefxai_facets.settings import HeuristicSettings

    analyzer = HeuristicAnalyzer(HeuristicSettings())
    wanted = tuple(d for d in FacetCatalog().all if d.name in ("request", "language"))
    requests, languages = [], []
    for record in records:
        messages = tuple(Message(m["role"], m["content"]) for m in record["messages"])
        values = analyzer.analyze(Job(Conversation(str(record["id"]), "", list(messages)), wanted))
        request, language = values["request"], values["language"]
        requests.append("" if request.failed else request.text or "")
        languages.append("und" if language.failed else language.text or "und")
    return requests, languages


class Embedder:
    """The embedding service's default backend, in this process; vectors cached per (view, data set)."""

    def __init__(self) -> None:
        from briefxai_embedding.backends import create_backend
        from briefxai_embedding.onnx_export import bundled_model_path
        from briefxai_embedding.settings import EmbeddingSettings
        from briefxai_embedding.token_cut import TokenCutter

        self.settings = EmbeddingSettings.load(cache_max_mb=0)
        self.backend = create_backend(self.settings)
        self.cutter = TokenCutter.from_file(bundled_model_path() / "tokenizer.json")
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.backend.load())

    def describe(self) -> str:
        precision = f" {self.settings.onnx_precision}" if self.settings.backend == "onnx" else ""
        return f"{self.settings.backend}{precision}"

    def embed(self, texts: Sequence[str], max_tokens: int) -> tuple[FloatArray, float, float]:
        """Vectors, mean tokens per text, texts per second."""
        self.loop.run_until_complete(self.backend.embed(self.cutter.cut(texts[:32], max_tokens)[0]))
        began = time.perf_counter()
        cut = self.cutter.cut(texts, max_tokens)[0]  # as the embedding service cuts (token_cut.py)
        result = self.loop.run_until_complete(self.backend.embed(cut))
        seconds = time.perf_counter() - began
        return result.vectors, statistics.fmean(result.token_counts), len(texts) / seconds

    def close(self) -> None:
        self.loop.run_until_complete(self.backend.close())
        self.loop.close()


# -- clustering and scores ---------------------------------------------------------------------------


def pipeline_labels(
    vectors: FloatArray, user_ids: Sequence[str], k: int, seed: int, *, privacy: bool = False
) -> tuple[list[str], int]:
    """Base-cluster id per conversation ("" when withheld) from the clustering service's pipeline, and
    the k it used."""
    from briefxai_clustering.model import ClusteringInput, ClusteringParams
    from briefxai_clustering.pipeline import ClusteringPipeline, PipelineConfig
    from briefxai_clustering.settings import ClusteringSettings

    pipeline = ClusteringPipeline(PipelineConfig.from_settings(ClusteringSettings.load()))
    ids = [str(i) for i in range(len(vectors))]
    params = ClusteringParams(k=k, seed=seed, skip_map=True, hierarchy_depth=1)
    if not privacy:
        params = ClusteringParams(
            k=k, seed=seed, skip_map=True, hierarchy_depth=1, min_cluster_size=1, min_distinct_users=1
        )
    result = pipeline.run(ClusteringInput(vectors, ids, list(user_ids)), params)
    by_id = {a.conversation_id: a.cluster_id for a in result.assignments}
    return [by_id[i] for i in ids], result.k


def scores(labels: Sequence[str], predicted: Sequence[str]) -> tuple[float, float]:
    return adjusted_mutual_info_score(labels, predicted), adjusted_rand_score(labels, predicted)


def mean_scores(labels: Sequence[str], cluster: Clusterer) -> tuple[float, float, float, int]:
    """Mean AMI, its sd and mean ARI over SEEDS, and the k of the first seed."""
    amis, aris, ks = [], [], []
    for seed in SEEDS:
        predicted, k = cluster(seed)
        ami, ari = scores(labels, predicted)
        amis.append(ami)
        aris.append(ari)
        ks.append(k)
    return statistics.fmean(amis), statistics.pstdev(amis), statistics.fmean(aris), ks[0]


Clusterer = Callable[[int], tuple[list[str], int]]


def by_pipeline(vectors: FloatArray, user_ids: Sequence[str], k: int) -> Clusterer:
    """seed -> the pipeline's labels and k, for ``mean_scores``."""

    def run(seed: int) -> tuple[list[str], int]:
        return pipeline_labels(vectors, user_ids, k, seed)

    return run


def by_kmeans(vectors: FloatArray, k: int, n_init: int | str = "auto") -> Clusterer:
    """seed -> scikit-learn KMeans labels (its defaults: the baseline a user would try first)."""

    def run(seed: int) -> tuple[list[str], int]:
        return [
            str(c) for c in KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(vectors)
        ], k

    return run


def user_ids_of(records: Sequence[dict[str, Any]]) -> list[str]:
    return [str(r.get("user_id", "")) for r in records]


# -- sections ----------------------------------------------------------------------------------------


def text_views(
    sets: Sequence[DataSet], embedder: Embedder, facets: dict[str, tuple[list[str], list[str]]]
) -> Any:
    rows = []
    vectors: dict[tuple[str, View], FloatArray] = {}
    for data in sets:
        if data.name == "gen-2k":
            continue
        labels, users = data.labels, user_ids_of(data.records)
        for view in VIEWS:
            texts = view_texts(data.records, view, facets[data.name][0])
            vecs, tokens, rate = embedder.embed(texts, view.tokens)
            vectors[(data.name, view)] = vecs
            auto = mean_scores(labels, by_pipeline(vecs, users, 0))
            at_labels = mean_scores(labels, by_pipeline(vecs, users, data.n_labels))
            plain = mean_scores(labels, by_kmeans(vecs, data.n_labels))
            rows.append(
                {
                    "set": data.name,
                    "view": view.title,
                    "tokens": round(tokens, 1),
                    "texts_per_second": round(rate, 1),
                    "ami_auto": round(auto[0], 3),
                    "ami_auto_sd": round(auto[1], 3),
                    "ari_auto": round(auto[2], 3),
                    "k_auto": auto[3],
                    "ami_k_labels": round(at_labels[0], 3),
                    "ami_plain_kmeans": round(plain[0], 3),
                }
            )
            print(f"  {data.name} {view.title}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows, vectors


def k_rules(
    sets: Sequence[DataSet], embedder: Embedder, facets: dict[str, tuple[list[str], list[str]]]
) -> Any:
    """AMI at the k of each rule, as a share of AMI at k = number of labels, on each set and size."""
    cases: list[tuple[str, FloatArray, list[str], list[str]]] = []
    for data in sets:
        texts = view_texts(data.records, DEFAULT_VIEW, facets[data.name][0])
        vecs, _, _ = embedder.embed(texts, DEFAULT_VIEW.tokens)
        labels, users = data.labels, user_ids_of(data.records)
        cases.append((data.name, vecs, labels, users))
        if data.name == "dev":
            for subset in range(3):
                pick = np.sort(np.random.default_rng(100 + subset).permutation(len(vecs))[:1000])
                cases.append(
                    (f"dev-1k #{subset + 1}", vecs[pick], [labels[i] for i in pick], [users[i] for i in pick])
                )
    rows = []
    for name, vecs, labels, users in cases:
        n, n_labels = len(vecs), len(set(labels))
        candidates = {
            "k = number of labels": n_labels,
            "former: round(sqrt(n/2))": round(math.sqrt(n / 2)),
            "**round(sqrt(n)) (default)**": round(math.sqrt(n)),
            "best silhouette": best_silhouette_k(vecs),
        }
        reference = mean_scores(labels, by_pipeline(vecs, users, n_labels))[0]
        for rule, k in candidates.items():
            ami = mean_scores(labels, by_pipeline(vecs, users, k))[0]
            rows.append(
                {
                    "set": name,
                    "n": n,
                    "labels": n_labels,
                    "rule": rule,
                    "k": k,
                    "ami": round(ami, 3),
                    "share": round(ami / reference, 3) if reference > 0 else 0.0,
                }
            )
        print(f"  k rules {name}: {rows[-4:]}", file=sys.stderr, flush=True)
    return rows


def best_silhouette_k(vectors: FloatArray) -> int:
    """The k of the best cosine silhouette over a geometric grid around sqrt(n) (a criterion on the
    data, measured to see whether it beats a rule on n)."""
    n = len(vectors)
    grid = sorted({max(2, round(x)) for x in np.geomspace(max(2.0, math.sqrt(n) / 4), 3 * math.sqrt(n), 10)})
    best, best_score = grid[0], -2.0
    for k in grid:
        labels = KMeans(n_clusters=k, n_init=1, random_state=0).fit_predict(vectors)
        score = float(
            silhouette_score(vectors, labels, metric="cosine", sample_size=min(n, 2000), random_state=0)
        )
        if score > best_score:
            best, best_score = k, score
    return best


def other_levers(vectors: dict[tuple[str, View], FloatArray], sets: Sequence[DataSet]) -> Any:
    """k-means restarts, centring the vectors, and the privacy merge, at the default view and k."""
    rows = []
    for data in sets:
        vecs = vectors.get((data.name, DEFAULT_VIEW))
        if vecs is None:
            continue
        labels, users = data.labels, user_ids_of(data.records)
        k = round(math.sqrt(len(vecs)))
        base = mean_scores(labels, by_pipeline(vecs, users, 0))[0]
        centred = vecs - vecs.mean(axis=0)
        centred /= np.linalg.norm(centred, axis=1, keepdims=True)
        variants = {
            "defaults (n_init 1)": base,
            "k-means n_init 4": mean_scores(labels, by_kmeans(vecs, k, n_init=4))[0],
            "vectors centred before clustering": mean_scores(labels, by_pipeline(centred, users, 0))[0],
        }
        privacy_amis, withheld = [], []
        for seed in SEEDS:
            predicted, _ = pipeline_labels(vecs, users, 0, seed, privacy=True)
            withheld.append(sum(1 for p in predicted if not p))
            privacy_amis.append(scores(labels, [p or "withheld" for p in predicted])[0])
        variants["privacy thresholds on (5 conversations, 3 users; withheld as one group)"] = (
            statistics.fmean(privacy_amis)
        )
        for name, ami in variants.items():
            rows.append(
                {"set": data.name, "variant": name, "ami": round(ami, 3), "delta": round(ami - base, 3)}
            )
        rows[-1]["withheld"] = round(statistics.fmean(withheld), 1)
    return rows


def determinism(
    embedder: Embedder, sets: Sequence[DataSet], facets: dict[str, tuple[list[str], list[str]]]
) -> Any:
    """The same texts embedded in one call, one by one and in a shuffled order: vectors and clusters."""
    data = sets[0]
    records = data.records[:600]
    texts = view_texts(records, DEFAULT_VIEW, facets[data.name][0][:600])
    together, _, _ = embedder.embed(texts, DEFAULT_VIEW.tokens)
    alone = np.vstack([embedder.embed([t], DEFAULT_VIEW.tokens)[0] for t in texts[:100]])
    order = np.random.default_rng(5).permutation(len(texts))
    shuffled_vecs, _, _ = embedder.embed([texts[i] for i in order], DEFAULT_VIEW.tokens)
    shuffled = np.empty_like(shuffled_vecs)
    shuffled[order] = shuffled_vecs
    users = user_ids_of(records)
    first, _ = pipeline_labels(together, users, 0, 1)
    second, _ = pipeline_labels(shuffled, users, 0, 1)
    return {
        "texts": len(texts),
        "min_cosine_alone_vs_batched": round(float(np.min(np.sum(alone * together[:100], axis=1))), 6),
        "min_cosine_shuffled_vs_batched": round(float(np.min(np.sum(shuffled * together, axis=1))), 6),
        "ari_between_runs": round(adjusted_rand_score(first, second), 4),
    }


def names(sets: Sequence[DataSet], vectors: dict[tuple[str, View], FloatArray], facets: Any) -> Any:
    """Base-level names of the largest clusters with their most common label, default options."""
    from briefxai_clustering.model import ClusteringInput, ClusteringParams
    from briefxai_clustering.pipeline import ClusteringPipeline, PipelineConfig
    from briefxai_clustering.settings import ClusteringSettings
    from briefxai_gateway.languages import language_label

    pipeline = ClusteringPipeline(PipelineConfig.from_settings(ClusteringSettings.load()))
    out = {}
    for data in sets:
        vecs = vectors.get((data.name, DEFAULT_VIEW))
        if vecs is None:
            continue
        ids = [str(r["id"]) for r in data.records]
        naming = [text[:300] for text in naming_texts(data.records, facets[data.name][0])]
        result = pipeline.run(
            ClusteringInput(vecs, ids, user_ids_of(data.records), naming),
            ClusteringParams(seed=1, skip_map=True),
        )
        label_of = dict(zip(ids, data.labels, strict=True))
        members: dict[str, list[str]] = {}
        for a in result.assignments:
            if a.cluster_id:
                members.setdefault(a.cluster_id, []).append(label_of[a.conversation_id])
        base = sorted((c for c in result.clusters if c.level == 0), key=lambda c: -c.size)[:NAMES_SHOWN]
        language_of = dict(zip(ids, facets[data.name][1], strict=True))
        languages: dict[str, Counter[str]] = {}
        for a in result.assignments:
            if a.cluster_id:
                languages.setdefault(a.cluster_id, Counter())[language_of[a.conversation_id]] += 1
        rows = []
        for cluster in base:
            flag = language_label(languages.get(cluster.id, Counter()))
            top, count = max(
                ((label, members[cluster.id].count(label)) for label in set(members[cluster.id])),
                key=lambda item: (item[1], item[0]),
            )
            name = f"{flag}: {cluster.name}" if flag else cluster.name
            rows.append(
                {
                    "name": name,
                    "size": cluster.size,
                    "label": top,
                    "label_share": round(count / cluster.size, 2),
                }
            )
        out[data.name] = rows
    return out


def naming_texts(records: Sequence[dict[str, Any]], requests: Sequence[str]) -> list[str]:
    from briefxai_gateway.embed_text import naming_text
    from briefxai_gateway.models import Message

    return [
        naming_text(request, [Message(m["role"], m["content"]) for m in record["messages"]], 300)
        for record, request in zip(records, requests, strict=True)
    ]


# -- report --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "quality.json")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    sets = load_sets()
    facets = {data.name: heuristic_facets(data.records) for data in sets}
    embedder = Embedder()
    try:
        views, vectors = text_views(sets, embedder, facets)
        rules = k_rules(sets, embedder, facets)
        same = determinism(embedder, sets, facets)
        backend = embedder.describe()
    finally:
        embedder.close()
    results = {
        "date": now_iso(),
        "commit": git_revision(),
        "backend": backend,
        "seeds": list(SEEDS),
        "sets": {d.name: {"conversations": len(d.records), "labels": d.n_labels} for d in sets},
        "text_views": views,
        "k_rules": rules,
        "other_levers": other_levers(vectors, sets),
        "determinism": same,
        "names": names(sets, vectors, facets),
        "seconds": round(time.perf_counter() - began, 1),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    from benchmarks.quality_report import render

    before_after = subprocess.run(
        [sys.executable, "-m", "benchmarks.naming_before_after", "--top", "10"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    names_compared = before_after.stdout if before_after.returncode == 0 else ""
    if not names_compared:
        print(f"naming_before_after failed: {before_after.stderr[-1000:]}", file=sys.stderr)
    report = render(results, names_compared)
    previous = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    if KEEP_MARKER in previous:
        report = report.rstrip("\n") + "\n\n" + previous[previous.index(KEEP_MARKER) :]
    args.out.write_text(report, encoding="utf-8")
    print(f"wrote {args.out} and {args.json} in {results['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
