"""The HTML of a report: one self-contained page (styles, script and data inline; nothing is fetched).

Every text from the results (cluster names, descriptions, keywords, requests, warnings, options) is
escaped where it is written: ``html.escape`` in the markup, and in the inline JSON data block ``<``,
``>``, ``&`` and the JavaScript line separators as ``\\u`` escapes (``<`` becomes ``\\u003c``); the
map script puts text into the page with ``textContent`` only. A Content-Security-Policy allows just
this page's own script and style (by their SHA-256) and no network at all, so an injected tag would
neither run nor load anything.

The map is our own inline SVG (a few KB of script) rather than plotly: plotly.js would add about 4.5 MB
to every report for a scatter plot and tooltips.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from briefxai_report.model import CHARTED_FACETS, Cluster, Distribution, ReportData, parse_results

# Tableau 10, then ten more well-separated colours; further groups get golden-angle hues.
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
    "#bab0ac", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
    "#7f7f7f", "#aec7e8",
)  # fmt: skip
UNKNOWN_COLOR = "#9e9e9e"
# Fixed scales are charted in this order, with zero counts; other facets by count, the largest first.
FIXED_ORDER = {"sentiment": ("negative", "neutral", "positive"), "concerning": ("1", "2", "3", "4", "5")}
MAX_BARS = 6
# Options as the report lists them (others the results carry follow in their own order).
OPTION_LABELS = {
    "display_name": "name",
    "facets": "facets",
    "k": "k (base clusters)",
    "hierarchy_depth": "levels above the base",
    "min_cluster_size": "privacy: smallest cluster",
    "min_distinct_users": "privacy: fewest distinct users",
    "seed": "seed",
    "embed_text": "embedded text",
    "embed_token_budget": "embedding tokens per conversation",
}
DEFAULT = "default"


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def color(index: int) -> str:
    if index < len(PALETTE):
        return PALETTE[index]
    return f"hsl({(index * 137.508) % 360:.0f} 55% 50%)"


@cache
def _asset(name: str) -> str:
    return resources.files("briefxai_report").joinpath("assets", name).read_text(encoding="utf-8")


def script_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``</script>``, no ``<!--``, no entity."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def _duration(seconds: float | None) -> str:
    """``4.2 s`` under a minute, else ``h:mm:ss``."""
    if seconds is None:
        return "unknown"
    return f"{seconds:.1f} s" if seconds < 60 else str(timedelta(seconds=round(seconds)))


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if value is not None else "unknown"


def _enum(value: str, prefix: str) -> str:
    name = value.removeprefix(prefix).lower()
    return DEFAULT if name in ("", "unspecified") else name


# -- the map ----------------------------------------------------------------------------------------


def map_data(report: ReportData) -> dict[str, Any]:
    """Groups (top-level clusters, with colours), clusters and points ``[x, y, cluster, request]``."""
    groups: list[dict[str, Any]] = []
    group_index: dict[str, int] = {}
    for index, top_id in enumerate(report.top_ids):
        top = report.clusters[top_id]
        group_index[top_id] = index
        groups.append({"id": top_id, "name": top.name or top_id, "color": color(index), "size": top.size})
    clusters: list[dict[str, Any]] = []
    cluster_index: dict[str, int] = {}
    points: list[list[Any]] = []
    for point in report.points:
        if point.cluster_id not in cluster_index:
            known = report.clusters.get(point.cluster_id)
            if known is None and "" not in group_index:  # a cluster the tree does not have
                group_index[""] = len(groups)
                groups.append({"id": "", "name": "not in the tree", "color": UNKNOWN_COLOR, "size": 0})
            cluster_index[point.cluster_id] = len(clusters)
            clusters.append(
                {
                    "id": point.cluster_id,
                    "name": known.name if known is not None else point.cluster_id,
                    "group": group_index[known.top_id if known is not None else ""],
                }
            )
        if not (math.isfinite(point.x) and math.isfinite(point.y)):
            continue
        points.append([round(point.x, 5), round(point.y, 5), cluster_index[point.cluster_id], point.request])
    counts = [0] * len(groups)
    for point_row in points:
        counts[clusters[point_row[2]]["group"]] += 1
    for group, count in zip(groups, counts, strict=True):
        group["points"] = count
    return {"groups": groups, "clusters": clusters, "points": points}


def _legend(groups: list[dict[str, Any]]) -> Iterator[str]:
    yield '<ul id="legend" aria-label="Top-level clusters (click to show or hide)">'
    for index, group in enumerate(groups):
        yield (
            f'<li><button type="button" data-group="{index}" aria-pressed="true">'
            f'<span class="swatch g{index}"></span><span>{esc(group["name"])}</span>'
            f'<span class="n">{group["points"]:,}</span></button></li>'
        )
    yield "</ul>"


# -- the tree ---------------------------------------------------------------------------------------


def _bars(distribution: Distribution) -> list[tuple[str, int]]:
    counts = distribution.counts
    fixed = FIXED_ORDER.get(distribution.facet)
    if fixed is not None:
        rows = [(value, counts.get(value, 0)) for value in fixed]
        rows += sorted((v, n) for v, n in counts.items() if v not in fixed and n)
        return rows
    rows = sorted(((v, n) for v, n in counts.items() if n), key=lambda r: (-r[1], r[0]))
    if len(rows) > MAX_BARS:
        rest = rows[MAX_BARS - 1 :]
        rows = [*rows[: MAX_BARS - 1], (f"{len(rest)} more", sum(n for _, n in rest))]
    return rows


def facet_chart(distribution: Distribution) -> str:
    rows = _bars(distribution)
    largest = max((n for _, n in rows), default=0) or 1
    mean = ""
    if distribution.mean is not None:
        mean = f' <span class="mean">mean {distribution.mean:.2f}</span>'.replace("-0.00", "0.00")
    parts = [f'<figure class="facet"><figcaption>{esc(distribution.facet)}{mean}</figcaption><table>']
    for value, count in rows:
        width = 100.0 * count / largest
        parts.append(
            f'<tr><th title="{esc(value)}">{esc(value)}</th><td class="bar-cell">'
            f'<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect class="track" width="100" height="10"></rect><rect width="{width:.1f}" height="10"></rect>'
            f'</svg></td><td class="n">{count:,}</td></tr>'
        )
    parts.append("</table></figure>")
    return "".join(parts)


def _node(report: ReportData, cluster: Cluster, groups: Mapping[str, int], seen: set[str]) -> Iterator[str]:
    seen.add(cluster.id)
    top = cluster.parent_id == "" or cluster.parent_id not in report.clusters
    yield f'<details class="cluster level-{cluster.level}" id="cluster-{esc(cluster.id)}"{" open" if top else ""}>'
    swatch = f'<span class="swatch g{groups[cluster.top_id]}"></span>' if cluster.top_id in groups else ""
    yield (
        f"<summary>{swatch}<span class='name'>{esc(cluster.name or cluster.id)}</span>"
        f"<span class='meta'>{cluster.size:,} conversations · {cluster.distinct_users:,} users</span>"
        f"<span class='cid'>{esc(cluster.id)} · level {cluster.level}</span></summary>"
    )
    yield '<div class="body">'
    if cluster.description:
        yield f'<p class="description">{esc(cluster.description)}</p>'
    if cluster.keywords:
        yield '<ul class="keywords">' + "".join(f"<li>{esc(k)}</li>" for k in cluster.keywords) + "</ul>"
    charts = [facet_chart(cluster.facets[name]) for name in CHARTED_FACETS if name in cluster.facets]
    if charts:
        yield '<div class="facets">' + "".join(charts) + "</div>"
    children = [report.clusters[c] for c in cluster.child_ids if c in report.clusters and c not in seen]
    for child in sorted(children, key=lambda c: (-c.size, c.id)):
        yield from _node(report, child, groups, seen)
    yield "</div></details>"


def _tree(report: ReportData, groups: Mapping[str, int]) -> Iterator[str]:
    if not report.clusters:
        yield '<p class="note">No cluster passed the privacy thresholds.</p>'
        return
    seen: set[str] = set()
    for top_id in report.top_ids:
        yield from _node(report, report.clusters[top_id], groups, seen)


# -- the run ----------------------------------------------------------------------------------------


def _option_value(name: str, value: Any) -> str:
    if value is None or value == "":
        return DEFAULT
    if name == "facets":
        return ", ".join(str(v) for v in value) if value else "all"
    if name == "embed_text":
        return _enum(str(value), "EMBED_TEXT_")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _run(report: ReportData) -> Iterator[str]:
    options = report.options
    names = [*OPTION_LABELS, *(n for n in options if n not in OPTION_LABELS)]
    yield '<div class="run"><div><h3>Options</h3><table class="kv">'
    for name in names:
        label = OPTION_LABELS.get(name, name)
        yield f"<tr><th>{esc(label)}</th><td>{esc(_option_value(name, options.get(name)))}</td></tr>"
    yield "</table>"
    yield "<h3>Number of clusters</h3><table class='kv'>"
    yield f"<tr><th>k</th><td>{report.k:,}</td></tr>"
    yield f"<tr><th>chosen by</th><td>{esc(report.k_rule or 'the k option')}</td></tr></table></div>"

    yield "<div><h3>Timings</h3><table class='kv'>"
    yield f"<tr><th>created</th><td>{esc(_when(report.create_time))}</td></tr>"
    yield f"<tr><th>last updated</th><td>{esc(_when(report.update_time))}</td></tr>"
    yield f"<tr><th>created → last update</th><td>{esc(_duration(report.duration_seconds))}</td></tr></table>"
    if report.stages:
        yield "<table class='kv'><tr><th>stage</th><th>done</th><th>of</th></tr>"
        for stage in report.stages:
            yield (
                f"<tr><td>{esc(_enum(stage.stage, 'STAGE_'))}</td><td>{stage.done:,}</td>"
                f"<td>{stage.total:,}</td></tr>"
            )
        yield "</table>"
    yield "<p class='note'>Per-stage throughput across analyses: <code>briefxai perf</code>.</p></div>"
    yield "<div><h3>Privacy</h3><table class='kv'>"
    yield f"<tr><th>conversations</th><td>{report.total_conversations:,}</td></tr>"
    yield f"<tr><th>reported</th><td>{report.reported_conversations:,}</td></tr>"
    yield f"<tr><th>withheld by the privacy thresholds</th><td>{report.withheld_conversations:,}</td></tr>"
    if report.unassigned_conversations:
        yield (
            "<tr><th>added later, near no cluster (unassigned)</th>"
            f"<td>{report.unassigned_conversations:,}</td></tr>"
        )
    yield (
        "</table><p class='note'>A conversation is withheld when its cluster has fewer conversations or "
        "distinct users than the privacy thresholds (see the options); withheld conversations are "
        "counted, never shown.</p>"
    )
    if report.warnings:
        yield "<h3>Warnings</h3><ul class='warnings'>"
        yield "".join(f"<li>{esc(w)}</li>" for w in report.warnings)
        yield "</ul>"
    yield "</div></div>"


# -- the page ---------------------------------------------------------------------------------------


def render_report(results: Mapping[str, Any]) -> str:
    """The report's HTML from merged GetAnalysisResults JSON (``ReportError`` on another shape)."""
    report = parse_results(results)
    data = map_data(report)
    groups = data["groups"]
    group_of = {g["id"]: index for index, g in enumerate(groups)}
    style = _asset("report.css") + "".join(
        f".g{index}{{background:{group['color']}}}" for index, group in enumerate(groups)
    )
    script = _asset("report.js")
    csp = (
        f"default-src 'none'; script-src '{_sha256(script)}'; style-src '{_sha256(style)}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    title = report.display_name or f"analysis {report.analysis_id}"
    placed = len(data["points"])
    stats = [
        ("conversations", f"{report.total_conversations:,}"),
        ("on the map", f"{placed:,}"),
        ("withheld", f"{report.withheld_conversations:,}"),
        ("base clusters (k)", f"{report.k:,}"),
        ("levels", f"{report.levels:,}"),
        ("run time", _duration(report.duration_seconds)),
    ]
    unplaced = report.reported_conversations - placed
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',  # our own text, no quote in it
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="BriefXAI">',
        f"<title>BriefXAI report: {esc(title)}</title>",
        '<link rel="icon" href="data:,">',
        f"<style>{style}</style></head><body>",
        f"<header><h1>{esc(title)}</h1>",
        f'<p class="sub">Analysis <code>{esc(report.analysis_id)}</code> · '
        f"{esc(_enum(report.state, 'ANALYSIS_STATE_'))} · created {esc(_when(report.create_time))}"
        + (f" · results revision {report.revision}" if report.revision else "")
        + "</p>",
        '<dl class="stats">',
        *(f"<div><dt>{esc(label)}</dt><dd>{esc(value)}</dd></div>" for label, value in stats),
        "</dl></header><main>",
        '<section id="map-section"><h2>Map</h2>',
        '<p class="hint">One point per reported conversation, coloured by its top-level cluster. Hover a '
        "point for its cluster and request, click it to open its cluster below; click a cluster on the "
        "right to hide or show it.</p>",
    ]
    if unplaced > 0:
        parts.append(
            f'<p class="note">{unplaced:,} reported conversations have no map position (conversations '
            "added to an analysis after it ran are counted in their clusters, not placed on its map).</p>"
        )
    parts += [
        '<div class="map-layout"><div class="map-wrap">',
        f'<svg id="map" viewBox="0 0 1000 620" role="img" aria-label="Map of {placed:,} conversations">'
        "</svg>",
        '<div id="tooltip" hidden><span class="t-group"></span><span class="t-cluster"></span>'
        '<span class="t-request"></span></div>',
        "<noscript><p class='note'>The map needs JavaScript; the clusters and tables below do not.</p>"
        "</noscript></div>",
        *_legend(groups),
        "</div></section>",
        '<section id="tree"><h2>Clusters</h2>',
        '<p class="hint">Each cluster with its conversations, distinct users, description, keywords and '
        "facet distributions; open one to see its children.</p>",
        *_tree(report, group_of),
        "</section>",
        '<section id="run-section"><h2>Run</h2>',
        *_run(report),
        "</section></main>",
        "<footer>Generated by BriefXAI from the analysis results; self-contained, it loads nothing.</footer>",
        f'<script type="application/json" id="report-data">{script_json(data)}</script>',
        f"<script>{script}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(results: Mapping[str, Any], path: Path) -> Path:
    """Renders the report and writes it to ``path`` (atomically, creating its folder)."""
    page = render_report(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
