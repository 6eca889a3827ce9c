"""What a report shows, read from the JSON of a GetAnalysisResultsResponse with all pages merged (the
CLI's ``analysis.json``: protobuf field names, every field present, 64-bit integers as strings).

Withheld conversations are dropped here, before anything is rendered: they have no point, and neither
their facets nor their ids reach the report; only their count does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Facet distributions charted per cluster, in this order.
CHARTED_FACETS = ("task", "language", "sentiment", "concerning")


class ReportError(ValueError):
    """The input is not the JSON of analysis results."""


@dataclass(frozen=True, slots=True)
class Distribution:
    facet: str
    counts: dict[str, int]
    mean: float | None = None


@dataclass(slots=True)
class Cluster:
    id: str
    level: int
    parent_id: str
    child_ids: list[str]
    name: str
    description: str
    size: int
    distinct_users: int
    keywords: list[str]
    facets: dict[str, Distribution]
    # The top-level cluster this one is under (itself when it is top-level).
    top_id: str = ""


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    cluster_id: str
    request: str


@dataclass(frozen=True, slots=True)
class StageProgress:
    stage: str
    done: int
    total: int


@dataclass(slots=True)
class ReportData:
    analysis_id: str
    state: str
    display_name: str
    options: dict[str, Any]
    create_time: datetime | None
    update_time: datetime | None
    stages: list[StageProgress]
    warnings: list[str]
    total_conversations: int
    withheld_conversations: int
    reported_conversations: int
    k: int
    k_rule: str
    # The results revision (conversations added to the analysis later make new ones) and the added
    # conversations that fit no cluster; both 0 for results without additions.
    revision: int
    unassigned_conversations: int
    clusters: dict[str, Cluster]
    # Top-level cluster ids, largest first.
    top_ids: list[str]
    points: list[Point] = field(default_factory=list)

    @property
    def unplaced(self) -> int:
        """Reported conversations without a map position."""
        return self.reported_conversations - len(self.points)

    @property
    def levels(self) -> int:
        return 1 + max((c.level for c in self.clusters.values()), default=-1)

    @property
    def duration_seconds(self) -> float | None:
        if self.create_time is None or self.update_time is None:
            return None
        return max((self.update_time - self.create_time).total_seconds(), 0.0)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError) as exc:
        raise ReportError(f"expected an integer, got {value!r}") from exc


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ReportError(f"expected a number, got {value!r}") from exc


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ReportError(f"{what} must be an object, got {type(value).__name__}")
    return value


def _list(value: Any, what: str) -> Sequence[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReportError(f"{what} must be a list, got {type(value).__name__}")
    return value


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _distribution(item: Mapping[str, Any]) -> Distribution:
    counts = {_str(k): _int(v) for k, v in _mapping(item.get("counts"), "facet counts").items()}
    mean = item.get("mean")
    return Distribution(_str(item.get("facet")), counts, None if mean is None else _float(mean))


def _cluster(item: Mapping[str, Any], index: int) -> Cluster:
    node = _mapping(item.get("cluster"), f"clusters[{index}].cluster")
    distributions = [
        _distribution(_mapping(d, f"clusters[{index}].facets")) for d in _list(item.get("facets"), "facets")
    ]
    return Cluster(
        id=_str(node.get("id")),
        level=_int(node.get("level")),
        parent_id=_str(node.get("parent_id")),
        child_ids=[_str(c) for c in _list(node.get("child_ids"), "child_ids")],
        name=_str(node.get("name")),
        description=_str(node.get("description")),
        size=_int(node.get("size")),
        distinct_users=_int(node.get("distinct_users")),
        keywords=[_str(k) for k in _list(node.get("keywords"), "keywords")],
        facets={d.facet: d for d in distributions},
    )


def _request(facets: Sequence[Any]) -> str:
    for value in facets:
        if isinstance(value, Mapping) and value.get("facet") == "request" and not value.get("failed"):
            return _str(value.get("text"))
    return ""


def _top_of(clusters: Mapping[str, Cluster], cluster_id: str) -> str:
    """The top-level ancestor (a cycle or a missing parent ends the walk where it is)."""
    seen = {cluster_id}
    current = clusters[cluster_id]
    while current.parent_id and current.parent_id in clusters and current.parent_id not in seen:
        seen.add(current.parent_id)
        current = clusters[current.parent_id]
    return current.id


def parse_results(results: Mapping[str, Any]) -> ReportData:
    """The report's data from merged GetAnalysisResults JSON; ReportError when it has another shape."""
    if not isinstance(results, Mapping) or not isinstance(results.get("analysis"), Mapping):
        raise ReportError("not analysis results: expected an object with an 'analysis' object")
    analysis = results["analysis"]
    options = dict(_mapping(analysis.get("options"), "analysis.options"))

    clusters: dict[str, Cluster] = {}
    for index, item in enumerate(_list(results.get("clusters"), "clusters")):
        cluster = _cluster(_mapping(item, f"clusters[{index}]"), index)
        clusters[cluster.id] = cluster
    for cluster in clusters.values():
        cluster.top_id = _top_of(clusters, cluster.id)
    top_ids = sorted(
        (c.id for c in clusters.values() if c.top_id == c.id), key=lambda i: (-clusters[i].size, i)
    )

    points: list[Point] = []
    reported = 0
    for index, item in enumerate(_list(results.get("conversations"), "conversations")):
        row = _mapping(item, f"conversations[{index}]")
        if row.get("withheld") or not row.get("cluster_id"):
            continue  # never shown: not its point, its facets nor its id
        reported += 1
        point = row.get("point")
        if not isinstance(point, Mapping) or "x" not in point or "y" not in point:
            continue
        request = _request(_list(row.get("facets"), f"conversations[{index}].facets"))
        points.append(Point(_float(point["x"]), _float(point["y"]), _str(row["cluster_id"]), request))

    stages = [
        StageProgress(_str(s.get("stage")), _int(s.get("done")), _int(s.get("total")))
        for s in (_mapping(s, "analysis.stages") for s in _list(analysis.get("stages"), "stages"))
    ]
    return ReportData(
        analysis_id=_str(analysis.get("id")),
        state=_str(analysis.get("state")),
        display_name=_str(options.get("display_name")),
        options=options,
        create_time=_time(analysis.get("create_time")),
        update_time=_time(analysis.get("update_time")),
        stages=stages,
        warnings=[_str(w) for w in _list(analysis.get("warnings"), "warnings")],
        total_conversations=_int(results.get("total_conversations") or analysis.get("conversation_count")),
        withheld_conversations=_int(results.get("withheld_conversations")),
        reported_conversations=reported,
        k=_int(results.get("k")),
        k_rule=_str(results.get("k_rule")),
        revision=_int(results.get("revision")),
        unassigned_conversations=_int(results.get("unassigned_conversations")),
        clusters=clusters,
        top_ids=top_ids,
        points=points,
    )
