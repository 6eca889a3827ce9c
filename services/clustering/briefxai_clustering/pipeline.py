"""Runs the stages in order, on plain data: ``ClusteringInput`` + ``ClusteringParams`` -> ``ClusteringResult``.

1. Canonical order: rows are sorted by conversation id (ids are unique), so every later step sees the
   same array whatever order the caller sent; the partition, the cluster ids, names and map are
   therefore invariant under permutation of the input (results come back in input order).
2. Normalise to unit length (cosine geometry).
3. choose_k.py -> base_clusters.py (k-means) -> privacy.py (merge or withhold small clusters)
   -> hierarchy.py (Ward over base centroids) -> naming.py (reported texts only) -> projection.py.
   The namer gets the reported texts with secrets replaced by ``[SECRET]`` and the words of fewer than
   ``min_distinct_users`` users masked (:func:`~briefxai_clustering.privacy.mask_rare_words`).

Cluster ids are ``L<level>-<index>``; within a level, index 0 is the largest cluster.
The input is expected to have passed validation.py (finite, non-zero rows, unique ids, lengths agree).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from briefxai_clustering.base_clusters import (
    BaseClustering,
    KMeansConfig,
    fit_base_clusters,
    normalized_centroids,
)
from briefxai_clustering.choose_k import KChoice, choose_k, count_distinct_rows
from briefxai_clustering.hierarchy import build_levels, parents
from briefxai_clustering.model import (
    Assignment,
    ClusteringInput,
    ClusteringParams,
    ClusteringResult,
    ClusterNode,
    FloatArray,
    IntArray,
    MapPoint,
)
from briefxai_clustering.naming import ClusterGroup, Namer, PhraseNamer
from briefxai_clustering.privacy import (
    PrivacyRule,
    apply_privacy,
    check_thresholds,
    distinct_users,
    mask_rare_words,
    user_codes,
)
from briefxai_clustering.projection import MapConfig, project
from briefxai_clustering.seeding import stage_seed
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.pii import redact_secrets

STAGES = ("prepare", "base", "privacy", "hierarchy", "naming", "map")
NAMING_TEXT_CHARS = 2_000  # naming reads at most this much of each text (texts are meant to be short)
ROW_CHUNK = 8192  # rows per step of the row-wise passes, so their temporaries stay small


@dataclass(frozen=True)
class PipelineConfig:
    max_k: int = 200
    threads: int = 1  # BLAS/OpenMP threads while a job runs; 0 = the libraries' own default
    kmeans: KMeansConfig = field(default_factory=KMeansConfig)
    map: MapConfig = field(default_factory=MapConfig)
    keywords_per_cluster: int = 8
    name_keywords: int = 2
    max_name_chars: int = 48
    naming_diversity: float = 0.5
    max_quote_chars: int = 100
    naming_texts_per_cluster: int = 100

    @classmethod
    def from_settings(cls, settings: ClusteringSettings) -> PipelineConfig:
        return cls(
            max_k=settings.max_k,
            threads=settings.resolved_compute_threads(),
            kmeans=KMeansConfig(
                minibatch_threshold=settings.minibatch_threshold,
                kmeans_n_init=settings.kmeans_n_init,
                minibatch_n_init=settings.minibatch_n_init,
                minibatch_batch_size=settings.minibatch_batch_size,
                max_iter=settings.kmeans_max_iter,
            ),
            map=MapConfig(
                umap_min_points=settings.umap_min_points,
                sample_size=settings.umap_sample_size,
                n_neighbors=settings.umap_n_neighbors,
                n_epochs=settings.umap_n_epochs,
                pca_dims=settings.map_pca_dims,
            ),
            keywords_per_cluster=settings.keywords_per_cluster,
            name_keywords=settings.name_keywords,
            max_name_chars=settings.max_name_chars,
            naming_diversity=settings.naming_diversity,
            max_quote_chars=settings.max_quote_chars,
            naming_texts_per_cluster=settings.naming_texts_per_cluster,
        )


def normalize_rows(vectors: np.ndarray, *, copy: bool = True) -> FloatArray:
    """Unit-length float32 rows. Each row is first divided by its largest absolute value, so squaring
    cannot overflow float32 however large the values are. Raises ValueError on an all-zero row.
    ``copy=False`` normalises a float32 array in place."""
    rows = np.array(vectors, dtype=np.float32, copy=True) if copy else np.asarray(vectors, dtype=np.float32)
    for start in range(0, len(rows), ROW_CHUNK):  # chunks: no temporary as large as the input
        chunk = rows[start : start + ROW_CHUNK]
        peak = np.abs(chunk).max(axis=1, keepdims=True)
        if (peak == 0).any():
            raise ValueError("cannot normalise a zero vector")
        chunk /= peak
        chunk /= np.sqrt(np.einsum("ij,ij->i", chunk, chunk))[:, None]
    return rows


def _consumable(vectors: np.ndarray) -> bool:
    return bool(vectors.dtype == np.float32 and vectors.flags.writeable and vectors.flags.c_contiguous)


def permute_rows_in_place(rows: FloatArray, order: IntArray) -> FloatArray:
    """``rows[:] = rows[order]`` for a permutation ``order``, with one spare row instead of a full copy:
    each cycle of the permutation is walked once (written here because numpy's fancy indexing always
    allocates the whole result)."""
    spare = np.empty(rows.shape[1:], dtype=rows.dtype)
    done = np.zeros(len(order), dtype=bool)
    targets = order.tolist()
    for start in np.flatnonzero(order != np.arange(len(order))).tolist():
        if done[start]:
            continue
        spare[...] = rows[start]
        i = start
        while True:
            done[i] = True
            j = targets[i]
            if j == start:
                rows[i] = spare
                break
            rows[i] = rows[j]
            i = j
    return rows


def ranked_by_centrality(vectors: FloatArray, labels: IntArray, centroids: FloatArray) -> list[IntArray]:
    """Members of each cluster, most similar to its centroid first (ties: lower index first)."""
    similarity = np.empty(len(labels), dtype=np.float32)
    for start in range(0, len(labels), ROW_CHUNK):  # chunks: centroids[labels] would copy every row
        stop = start + ROW_CHUNK
        similarity[start:stop] = np.einsum("ij,ij->i", vectors[start:stop], centroids[labels[start:stop]])
    order = np.lexsort((np.arange(len(labels)), -similarity, labels))
    bounds = np.searchsorted(labels[order], np.arange(centroids.shape[0] + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(centroids.shape[0])]


def by_size(labels: IntArray, n_clusters: int) -> IntArray:
    """Renumbers clusters by size (largest first; ties keep their current order)."""
    sizes = np.bincount(labels, minlength=n_clusters)
    order = np.lexsort((np.arange(n_clusters), -sizes))
    rank = np.empty(n_clusters, dtype=np.int64)
    rank[order] = np.arange(n_clusters)
    return rank[labels]


def offline_namer(config: PipelineConfig) -> PhraseNamer:
    """The offline keyword namer with ``config``'s naming settings."""
    return PhraseNamer(
        keywords_per_cluster=config.keywords_per_cluster,
        name_phrases=config.name_keywords,
        max_quote_chars=config.max_quote_chars,
        diversity=config.naming_diversity,
        max_name_chars=config.max_name_chars,
    )


class ClusteringPipeline:
    def __init__(self, config: PipelineConfig | None = None, namer: Namer | None = None) -> None:
        self.config = config or PipelineConfig()
        self.namer: Namer = namer or offline_namer(self.config)

    def run(
        self, data: ClusteringInput, params: ClusteringParams, *, consume_input: bool = False
    ) -> ClusteringResult:
        """The whole pipeline, in the calling thread (call it from a worker thread, not an event loop).

        ``consume_input``: the pipeline may reorder and normalise ``data.vectors`` in place (a writable
        C-contiguous float32 array the caller no longer needs) instead of working on a copy.
        """
        if self.config.threads > 0:
            with threadpool_limits(limits=self.config.threads):
                return self._run(data, params, consume_input)
        return self._run(data, params, consume_input)

    def _run(
        self, data: ClusteringInput, params: ClusteringParams, consume_input: bool = False
    ) -> ClusteringResult:
        timings: dict[str, float] = {}
        cpu_timings: dict[str, float] = {}

        @contextmanager
        def stage(name: str) -> Iterator[None]:
            started, cpu_started = time.perf_counter(), time.thread_time()
            yield
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
            cpu_timings[name] = cpu_timings.get(name, 0.0) + time.thread_time() - cpu_started

        n = len(data.ids)
        if data.vectors.shape[0] != n or n < 2:
            raise ValueError(f"need at least 2 vectors and one id per vector, got {data.vectors.shape} / {n}")
        with stage("prepare"):
            order = np.array(sorted(range(n), key=data.ids.__getitem__), dtype=np.int64)
            if consume_input and _consumable(data.vectors):
                vectors = normalize_rows(permute_rows_in_place(data.vectors, order), copy=False)
            else:
                vectors = normalize_rows(data.vectors[order], copy=False)  # indexing made a copy already
            codes = user_codes([data.user_ids[i] for i in order] if data.user_ids else [], n)
            texts = [data.texts[i] for i in order] if data.texts else [""] * n
            n_distinct = count_distinct_rows(vectors)
        with stage("base"):
            choice: KChoice = choose_k(
                n, n_distinct, params.k, max_k=self.config.max_k, min_cluster_size=params.min_cluster_size
            )
            base: BaseClustering = fit_base_clusters(
                vectors, choice.k, stage_seed(params.seed, "base_clusters"), self.config.kmeans
            )
        with stage("privacy"):
            rule = PrivacyRule(
                params.min_cluster_size, params.min_distinct_users, params.merge_small_clusters
            )
            privacy = apply_privacy(base.labels, base.centroids, codes, rule)
            reported = np.flatnonzero(privacy.labels >= 0)
            # Usually nothing is withheld: then no copy of every vector.
            rep_vectors = vectors if len(reported) == n else vectors[reported]
            rep_codes = codes[reported]
            rep_texts = [texts[i] for i in reported]
            k0 = privacy.n_clusters
            base_labels = by_size(privacy.labels[reported], k0) if k0 else np.zeros(0, dtype=np.int64)
        with stage("hierarchy"):
            nodes, level_labels, level_centroids = self._hierarchy(
                rep_vectors, rep_codes, base_labels, k0, params, rule
            )
        with stage("naming"):
            self._name(
                nodes,
                level_labels,
                level_centroids,
                rep_vectors,
                rep_texts,
                rep_codes,
                params.min_distinct_users,
            )
        inverse = np.empty(n, dtype=np.int64)  # sorted position of each input index
        inverse[order] = np.arange(n)
        points: list[MapPoint] = []
        map_algorithm = "none"
        with stage("map"):
            if not params.skip_map and len(reported):
                projection = project(
                    rep_vectors,
                    stage_seed(params.seed, "map"),
                    self.config.map,
                    groups=base_labels,
                    distinct=len(reported) if n_distinct == n else None,
                )
                map_algorithm = projection.algorithm
                row = np.full(n, -1, dtype=np.int64)  # map row of each sorted position
                row[reported] = np.arange(len(reported))
                for original, position in enumerate(inverse):
                    j = int(row[position])
                    if j >= 0:
                        x, y = projection.coords[j]
                        points.append(MapPoint(data.ids[original], float(x), float(y)))
        cluster_of = np.full(n, -1, dtype=np.int64)
        cluster_of[reported] = base_labels
        assignments = []
        for original, position in enumerate(inverse):
            label = int(cluster_of[position])
            assignments.append(Assignment(data.ids[original], f"L0-{label}" if label >= 0 else "", label < 0))
        k_rule = choice.rule
        if privacy.merged_clusters or privacy.withheld_clusters:
            k_rule += (
                f"; privacy: {privacy.merged_clusters} small clusters merged, "
                f"{privacy.withheld_clusters} withheld ({privacy.withheld_count} conversations)"
            )
        return ClusteringResult(
            clusters=nodes,
            assignments=assignments,
            points=points,
            k=base.k,
            k_rule=k_rule,
            base_algorithm=base.algorithm,
            map_algorithm=map_algorithm,
            withheld_count=privacy.withheld_count,
            timings=timings,
            cpu_timings=cpu_timings,
        )

    def _hierarchy(
        self,
        vectors: FloatArray,
        codes: IntArray,
        base_labels: IntArray,
        k0: int,
        params: ClusteringParams,
        rule: PrivacyRule,
    ) -> tuple[list[ClusterNode], list[IntArray], list[FloatArray]]:
        """Nodes of every level (base first), each conversation's cluster per level, centroids per level."""
        if k0 == 0:
            return [], [], []
        base_centroids = normalized_centroids(vectors, base_labels, k0)
        base_sizes = np.bincount(base_labels, minlength=k0)
        maps = build_levels(base_centroids, base_sizes, params.hierarchy_depth, params.max_top_clusters)
        level_labels = [base_labels] + [m[base_labels] for m in maps]
        counts = [k0] + [int(m.max()) + 1 for m in maps]
        level_centroids = [base_centroids] + [
            normalized_centroids(vectors, labels, c)
            for labels, c in zip(level_labels[1:], counts[1:], strict=True)
        ]
        by_level: list[list[ClusterNode]] = []
        for level, (labels, count) in enumerate(zip(level_labels, counts, strict=True)):
            sizes = np.bincount(labels, minlength=count)
            users = distinct_users(labels, codes, count)
            check_thresholds(sizes, users, rule, level=level)
            by_level.append(
                [
                    ClusterNode(
                        id=f"L{level}-{c}", level=level, size=int(sizes[c]), distinct_users=int(users[c])
                    )
                    for c in range(count)
                ]
            )
        for level in range(len(by_level) - 1):
            parent = parents(level_labels[level], level_labels[level + 1], counts[level])
            lower_sizes = np.array([node.size for node in by_level[level]])
            upper_sizes = np.array([node.size for node in by_level[level + 1]])
            if not np.array_equal(
                np.bincount(parent, weights=lower_sizes, minlength=counts[level + 1]), upper_sizes
            ):
                raise RuntimeError(f"cluster sizes of level {level} do not add up to level {level + 1}")
            for c, node in enumerate(by_level[level]):
                up = by_level[level + 1][int(parent[c])]
                node.parent_id = up.id
                up.child_ids.append(node.id)
        return [node for level in by_level for node in level], level_labels, level_centroids

    def _name(
        self,
        nodes: Sequence[ClusterNode],
        level_labels: Sequence[IntArray],
        level_centroids: Sequence[FloatArray],
        vectors: FloatArray,
        texts: Sequence[str],
        codes: IntArray,
        min_users: int,
    ) -> None:
        """Names every node from the texts and vectors of (at most ``naming_texts_per_cluster``) most
        central members of each base cluster; ``texts``, ``vectors`` and user ``codes`` are the reported
        conversations'. Secrets and the words of fewer than ``min_users`` users never reach the namer."""
        if not nodes:
            return
        node_by_id = {node.id: node for node in nodes}
        cap = self.config.naming_texts_per_cluster
        base_ranked = ranked_by_centrality(vectors, level_labels[0], level_centroids[0])
        taken = [ranked[:cap] for ranked in base_ranked]
        weight_of = np.zeros(len(vectors), dtype=np.float64)
        for ranked, chosen in zip(base_ranked, taken, strict=True):
            weight_of[chosen] = len(ranked) / len(chosen)
        sample = np.sort(np.concatenate(taken))
        sample_vectors = vectors[sample]
        sample_weights = weight_of[sample]
        levels: list[list[ClusterGroup]] = []
        for level, (labels, centroids) in enumerate(zip(level_labels, level_centroids, strict=True)):
            members = ranked_by_centrality(sample_vectors, labels[sample], centroids)
            levels.append(
                [
                    ClusterGroup(
                        cluster_id=f"L{level}-{c}",
                        level=level,
                        size=node_by_id[f"L{level}-{c}"].size,
                        members=members[c],
                        weights=sample_weights[members[c]],
                        child_ids=tuple(node_by_id[f"L{level}-{c}"].child_ids),
                    )
                    for c in range(len(members))
                ]
            )
        sample_texts = [redact_secrets(texts[int(i)][:NAMING_TEXT_CHARS]) for i in sample]
        labels_by_id = self.namer.name(
            mask_rare_words(sample_texts, codes[sample], min_users), sample_vectors, levels
        )
        for node in nodes:
            label = labels_by_id[node.id]
            node.name, node.description, node.keywords = label.name, label.description, list(label.keywords)
