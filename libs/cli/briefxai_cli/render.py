"""Terminal output with rich: the progress bars, the cluster tree, tables of analyses and scores, the
performance report."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import error_text, stage_name, state_name
from briefxai_cli.evaluation import EvaluationReport, RunComparison

STATE_STYLE = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "PENDING": "blue",
}


class ProgressView:
    """One bar per pipeline stage, fed by WatchAnalysis updates."""

    def __init__(self, console: Console, title: str = "") -> None:
        self.console = console
        self.title = title
        self.progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[int, TaskID] = {}
        self.last_state = ""

    def __enter__(self) -> ProgressView:
        if self.title:
            self.console.print(self.title)
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def update(self, update: gateway_pb2.WatchAnalysisResponse) -> None:
        analysis = update.analysis
        for stage in analysis.stages:
            total = stage.total or None
            task = self.tasks.get(stage.stage)
            if task is None:
                task = self.progress.add_task(stage_name(stage.stage).lower(), total=total, info="")
                self.tasks[stage.stage] = task
            info = ""
            if stage.stage == analysis.stage and analysis.state == gateway_pb2.ANALYSIS_STATE_RUNNING:
                info = _rate_eta(update.rate, update.eta_seconds)
            self.progress.update(task, completed=stage.done, total=total, info=info)
        state = state_name(analysis.state)
        if state != self.last_state:
            self.last_state = state
            if analysis.state != gateway_pb2.ANALYSIS_STATE_RUNNING:
                self.progress.console.print(
                    f"analysis {analysis.id}: [{STATE_STYLE.get(state, '')}]{state}[/]"
                )


def _rate_eta(rate: float, eta: float) -> str:
    parts = []
    if rate > 0:
        parts.append(f"{rate:,.1f}/s")
    if eta >= 0:
        parts.append(f"~{_duration(eta)} left")
    return ", ".join(parts)


def _duration(value: float) -> str:
    seconds = round(value)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# --------------------------------------------------------------------------------------------------
# Results


def cluster_tree(results: gateway_pb2.GetAnalysisResultsResponse, title: str | None = None) -> Tree:
    """Top-level clusters first, biggest first, down to the base clusters."""
    clusters = {item.cluster.id: item.cluster for item in results.clusters}
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    for cluster in clusters.values():
        if cluster.parent_id and cluster.parent_id in clusters:
            children.setdefault(cluster.parent_id, []).append(cluster.id)
        else:
            roots.append(cluster.id)
    unassigned = results.unassigned_conversations
    reported = results.total_conversations - results.withheld_conversations - unassigned
    label = title or (
        f"[bold]{results.total_conversations} conversations[/] · {reported} in clusters · "
        f"{results.withheld_conversations} withheld"
        + (f" · {unassigned} unassigned" if unassigned else "")
        + f" · k={results.k}"
        + (f" ({results.k_rule})" if results.k_rule else "")
        + (f" · results revision {results.revision}" if results.revision else "")
    )
    tree = Tree(label)

    def add(parent: Tree, cluster_id: str) -> None:
        cluster = clusters[cluster_id]
        text = Text(overflow="fold")
        text.append(cluster.name or cluster.id, style="bold")
        text.append(f"  {cluster.size} conv · {cluster.distinct_users} users", style="cyan")
        text.append(f"  [{cluster.id}]", style="dim")
        if cluster.keywords:
            text.append("  " + ", ".join(cluster.keywords[:5]), style="dim italic")
        node = parent.add(text)
        for child in sorted(children.get(cluster_id, []), key=lambda c: (-clusters[c].size, c)):
            add(node, child)

    for root in sorted(roots, key=lambda c: (-clusters[c].size, c)):
        add(tree, root)
    return tree


def top_level_of(clusters: Iterable[gateway_pb2.ClusterResult]) -> dict[str, str]:
    """Each cluster id with the id of the top-level cluster above it (itself when it is one)."""
    parent = {item.cluster.id: item.cluster.parent_id for item in clusters}
    top: dict[str, str] = {}
    for cluster_id in parent:
        current, seen = cluster_id, {cluster_id}
        while parent.get(current) and parent[current] in parent and parent[current] not in seen:
            current = parent[current]
            seen.add(current)
        top[cluster_id] = current
    return top


def assignment_summary(
    response: gateway_pb2.AssignConversationsResponse, page: gateway_pb2.GetAnalysisResultsResponse
) -> RenderableType:
    """What AssignConversations did, per top-level cluster of the revision's tree, and in all."""
    clusters = {item.cluster.id: item.cluster for item in page.clusters}
    top = top_level_of(page.clusters)
    assigned: dict[str, int] = {}
    withheld: dict[str, int] = {}
    for item in response.assignments:
        if item.unassigned:
            continue
        root = top.get(item.cluster_id, item.cluster_id)
        assigned[root] = assigned.get(root, 0) + 1
        if item.withheld:
            withheld[root] = withheld.get(root, 0) + 1
    table = Table(title=f"new conversations per top-level cluster (results revision {response.revision})")
    for column in (
        "top-level cluster",
        "assigned",
        "withheld (privacy)",
        f"conversations in revision {response.revision}",
    ):
        table.add_column(column, justify="left" if column == "top-level cluster" else "right")
    roots = {root for root in top.values() if root in clusters}
    for root in sorted(roots, key=lambda r: (-assigned.get(r, 0), -clusters[r].size, r)):
        cluster = clusters[root]
        table.add_row(
            f"{escape(cluster.name or cluster.id)} [dim]\\[{cluster.id}][/]",
            str(assigned.get(root, 0)),
            str(withheld.get(root, 0)),
            str(cluster.size),
        )
    lines: list[RenderableType] = [
        table,
        Text(
            f"results revision {response.revision}: {response.assigned_count} assigned, "
            f"{response.unassigned_count} unassigned (farther than {response.max_distance:.3f} from every "
            "base cluster)"
            + (
                f"; {response.withheld_count} of the assigned withheld until their cluster's new "
                "conversations reach the privacy threshold"
                if response.withheld_count
                else ""
            )
            + (
                f"; {response.released_count} withheld earlier now reported"
                if response.released_count
                else ""
            )
        ),
        Text(
            f"the revision: {page.total_conversations} conversations, {page.withheld_conversations} withheld, "
            f"{page.unassigned_conversations} unassigned"
        ),
    ]
    return Group(*lines)


def analysis_summary(analysis: gateway_pb2.Analysis) -> RenderableType:
    state = state_name(analysis.state)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("id", analysis.id)
    table.add_row("state", f"[{STATE_STYLE.get(state, '')}]{state}[/]")
    if analysis.options.display_name:
        table.add_row("name", escape(analysis.options.display_name))
    table.add_row("conversations", str(analysis.conversation_count))
    if analysis.stage:
        table.add_row("stage", stage_name(analysis.stage).lower())
    for stage in analysis.stages:
        total = str(stage.total) if stage.total else "?"
        table.add_row(f"  {stage_name(stage.stage).lower()}", f"{stage.done}/{total}")
    table.add_row("created", _timestamp(analysis.create_time.seconds))
    table.add_row("updated", _timestamp(analysis.update_time.seconds))
    if analysis.request_id:
        table.add_row("request id", escape(analysis.request_id))
    if analysis.HasField("error"):
        table.add_row("error", f"[red]{escape(error_text(analysis.error))}[/]")
    for warning in analysis.warnings:
        table.add_row("warning", f"[yellow]{escape(warning)}[/]")
    return table


def analyses_table(analyses: Iterable[gateway_pb2.Analysis]) -> Table:
    table = Table(title="analyses (newest first)")
    for column in ("id", "state", "conversations", "stage", "created", "name"):
        table.add_column(column, justify="right" if column == "conversations" else "left")
    for analysis in analyses:
        state = state_name(analysis.state)
        table.add_row(
            analysis.id,
            f"[{STATE_STYLE.get(state, '')}]{state}[/]",
            str(analysis.conversation_count),
            stage_name(analysis.stage).lower() if analysis.stage else "",
            _timestamp(analysis.create_time.seconds),
            escape(analysis.options.display_name),
        )
    return table


def evaluation_table(
    report: EvaluationReport, comparison: RunComparison | None, label_key: str
) -> RenderableType:
    table = Table(title=f"agreement with {label_key} per hierarchy level")
    for column in ("level", "clusters", "labels", "scored", "AMI", "ARI", "homogeneity", "completeness"):
        table.add_column(column, justify="right")
    if comparison is not None:
        table.add_column("same seed: ARI run1↔run2", justify="right")
    for score in report.levels:
        row = [
            str(score.level),
            str(score.clusters),
            str(score.labels),
            str(score.conversations),
            _num(score.ami),
            _num(score.ari),
            _num(score.homogeneity),
            _num(score.completeness),
        ]
        if comparison is not None:
            ari = comparison.ari_by_level.get(score.level, math.nan)
            same = comparison.identical_by_level.get(score.level, False)
            row.append(f"{_num(ari)} {'✓' if same else '✗'}")
        table.add_row(*row)
    lines: list[RenderableType] = [
        table,
        Text(
            f"{report.total} conversations: {report.scored} scored, {report.withheld} withheld by the privacy "
            f"threshold (excluded), {report.unlabelled} without a label (excluded)"
        ),
    ]
    if comparison is not None:
        verdict = (
            "[green]deterministic: the second run with the same seed gave the same partition at every level[/]"
            if comparison.identical
            else "[red]NOT deterministic: the second run with the same seed gave a different partition[/]"
        )
        if not comparison.same_withheld:
            verdict += " [red](the withheld conversations differ)[/]"
        lines.append(Text.from_markup(verdict))
    return Group(*lines)


STAGE_COLUMNS = ("stage", "conversations", "seconds", "conv/s", "share", "earlier → later conv/s", "trend")


def performance_report(report: gateway_pb2.GetPerformanceReportResponse) -> RenderableType:
    """Stages (throughput, share, trend), RPC latencies, memory per gateway process, recommendations."""
    start = _timestamp(report.window_start_time.seconds)
    end = _timestamp(report.window_end_time.seconds)
    window = report.window_end_time.seconds - report.window_start_time.seconds
    parts: list[RenderableType] = [
        Text(
            f"window {start} → {end} ({_duration(window)}): {report.analysis_count} analyses succeeded, "
            f"{report.conversation_count:,} conversations, {report.conversations_per_second:,.1f} "
            f"conversations/s end to end; {report.sample_count} samples"
        )
    ]
    if report.stages:
        bottleneck = report.bottleneck
        stages = Table(title="throughput per stage (trend: later half of the window against the earlier)")
        for column in STAGE_COLUMNS:
            stages.add_column(column, justify="left" if column == "stage" else "right")
        for stage in report.stages:
            name = stage_name(stage.stage).lower()
            if stage.stage == bottleneck:
                name = f"[bold red]{name} ◀ bottleneck[/]"
            halves = ""
            if stage.HasField("trend"):  # both halves are set
                earlier, later = stage.earlier_conversations_per_second, stage.later_conversations_per_second
                halves = f"{earlier:,.1f} → {later:,.1f}"
            trend = ""
            if stage.HasField("trend"):
                style = "red" if stage.trend < 0 else "green"
                trend = f"[{style}]{stage.trend:+.0%}[/]"
            stages.add_row(
                name,
                f"{stage.conversation_count:,}",
                f"{stage.seconds:,.2f}",
                f"{stage.conversations_per_second:,.1f}",
                f"{stage.share:.0%}",
                halves,
                trend,
            )
        parts.append(stages)
    else:
        parts.append(Text("no analysis succeeded in the window: no stage throughput or bottleneck yet"))
    if report.rpc_latencies:
        rpcs = Table(title="RPC latency (bucket-interpolated percentiles)")
        for column in ("method", "type", "calls", "mean", "p50", "p95", "p99"):
            rpcs.add_column(column, justify="left" if column in ("method", "type") else "right")
        for rpc in report.rpc_latencies:
            rpcs.add_row(
                rpc.method,
                rpc.grpc_type,
                f"{rpc.count:,}",
                _seconds(rpc.mean_seconds),
                _seconds(rpc.p50_seconds),
                _seconds(rpc.p95_seconds),
                _seconds(rpc.p99_seconds),
            )
        parts.append(rpcs)
    if report.memory_trends:
        memory = Table(title="gateway memory (RSS)")
        for column in ("process", "samples", "first MB", "last MB", "peak MB", "MB/h", "trend"):
            memory.add_column(column, justify="left" if column in ("process", "trend") else "right")
        for item in report.memory_trends:
            status = f"[red]growing: {escape(item.warning)}[/]" if item.growing else "[green]stable[/]"
            memory.add_row(
                escape(item.instance),
                str(item.sample_count),
                f"{item.first_mb:,.0f}",
                f"{item.last_mb:,.0f}",
                f"{item.peak_mb:,.0f}",
                f"{item.slope_mb_per_hour:+,.1f}",
                status,
            )
        parts.append(memory)
    if report.recommendations:
        parts.append(Text("recommendations:", style="bold"))
        parts.extend(Text(f"  • {line}") for line in report.recommendations)
    else:
        parts.append(Text("recommendations: none (no rule fired)"))
    return Group(*parts)


def _seconds(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _timestamp(seconds: int) -> str:
    if not seconds:
        return ""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def input_error_lines(errors: Sequence[object], limit: int, prefix: str = "input error") -> list[str]:
    lines = [f"{prefix}: {error}" for error in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"{prefix}: ... and {len(errors) - limit} more")
    return lines
