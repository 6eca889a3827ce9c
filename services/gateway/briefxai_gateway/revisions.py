"""Revisions of an analysis's results: what AssignConversations adds, and what each revision reports.

Revision 0 is what the pipeline stored. Each AssignConversations call makes the next one: the
conversations it adds (each with its nearest base cluster, or unassigned) and every cluster of the
unchanged tree with its counts and facet distributions as they are with them. Earlier revisions stay as
they were.

The privacy threshold (the analysis's ``min_cluster_size`` and ``min_distinct_users``) applies to what a
revision adds to a cluster, not only to the cluster's total: comparing two revisions would otherwise
show the facets of the one conversation added in between. So the conversations a cluster gets are
reported only once, together with the cluster's earlier held-back ones, they reach the thresholds on
their own (at least ``min_cluster_size`` conversations from at least ``min_distinct_users`` distinct
users; an empty user id counts as a user of its own, as in the clustering service). Until then they
are withheld: in no reported cluster, in no count, in no distribution; they count towards the
cluster's next additions. So a cluster whose additions in a revision are below the threshold reports
none of them; and as every cluster of the tree passed the thresholds in revision 0 and grows only by
steps that pass them, no cluster of any revision is below them either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from .distributions import DistributionBuilder, merge
from .models import ClusterWithFacets, FacetDefinition, FacetValue

# What a revision of the results falls back to where the analysis left a threshold to the clustering
# service: the clustering service's documented defaults (briefxai_clustering.privacy.PrivacyRule).
FALLBACK_MIN_CLUSTER_SIZE = 5
FALLBACK_MIN_DISTINCT_USERS = 3


@dataclass(frozen=True, slots=True)
class PrivacyRule:
    min_cluster_size: int
    min_distinct_users: int

    def passes(self, size: int, distinct_users: int) -> bool:
        return size >= self.min_cluster_size and distinct_users >= self.min_distinct_users


def user_key(user_id: str, ordinal: int) -> str:
    """The user a conversation counts as: its user id, or a user of its own when it has none."""
    return user_id if user_id else f"\x00{ordinal}"


@dataclass(slots=True)
class Member:
    """A conversation added to the analysis: where it landed and what it brings to its cluster."""

    ordinal: int
    conversation_id: str
    user: str  # user_key
    cluster_id: str  # the nearest base cluster; "" when unassigned
    distance: float
    values: list[FacetValue]
    revision: int  # the revision that added it


@dataclass(slots=True)
class RevisionSummary:
    """The counts of one revision."""

    revision: int
    total: int  # the analysis's own conversations and every added one up to this revision
    withheld: int  # in no reported cluster by the privacy rule (own and added)
    unassigned: int  # added ones farther than the threshold from every base cluster
    max_distance: float = 0.0


@dataclass(slots=True)
class RevisionState:
    """A revision as the next one builds on it."""

    summary: RevisionSummary
    clusters: list[ClusterWithFacets]  # the tree as this revision reports it
    users: dict[str, set[str]]  # cluster id (any level) -> user keys of its reported conversations
    pending: dict[str, list[Member]]  # base cluster id -> added conversations held back

    @property
    def revision(self) -> int:
        return self.summary.revision


@dataclass(slots=True)
class ConversationAssignment:
    conversation_id: str
    cluster_id: str  # "" when unassigned
    distance: float
    unassigned: bool
    withheld: bool


@dataclass(slots=True)
class AssignOutcome:
    """The answer of an AssignConversations call (a replay with its request id gets the same)."""

    revision: int
    assignments: list[ConversationAssignment]
    max_distance: float
    released_count: int = 0

    @property
    def assigned_count(self) -> int:
        return sum(1 for a in self.assignments if not a.unassigned)

    @property
    def unassigned_count(self) -> int:
        return sum(1 for a in self.assignments if a.unassigned)

    @property
    def withheld_count(self) -> int:
        return sum(1 for a in self.assignments if a.withheld)


@dataclass(slots=True)
class NewRevision:
    """The next revision, ready to be stored."""

    summary: RevisionSummary
    request_id: str
    members: list[Member]  # added by it, in request order (ordinals consecutive)
    released: set[int]  # ordinals of its own members it reports
    released_earlier: list[int]  # ordinals of earlier members it reports for the first time
    clusters: list[ClusterWithFacets]
    state: RevisionState = field(repr=False)  # the revision as the one after it will build on it

    @property
    def revision(self) -> int:
        return self.summary.revision

    def outcome(self) -> AssignOutcome:
        return AssignOutcome(
            revision=self.revision,
            assignments=[
                ConversationAssignment(
                    conversation_id=m.conversation_id,
                    cluster_id=m.cluster_id,
                    distance=m.distance,
                    unassigned=not m.cluster_id,
                    withheld=bool(m.cluster_id) and m.ordinal not in self.released,
                )
                for m in self.members
            ],
            max_distance=self.summary.max_distance,
            released_count=len(self.released_earlier),
        )


def counted_facets(clusters: Sequence[ClusterWithFacets]) -> set[str]:
    """The facets the analysis's distributions count (free text and many-valued text facets are not)."""
    return {d.facet for item in clusters for d in item.facets}


def ancestors(clusters: Sequence[ClusterWithFacets]) -> dict[str, list[str]]:
    """Each cluster id with itself and the ids above it, bottom up."""
    parent = {item.cluster.id: item.cluster.parent_id for item in clusters}
    chains: dict[str, list[str]] = {}
    for cluster_id in parent:
        chain = [cluster_id]
        seen = {cluster_id}
        up = parent.get(cluster_id, "")
        while up and up in parent and up not in seen:
            chain.append(up)
            seen.add(up)
            up = parent[up]
        chains[cluster_id] = chain
    return chains


def next_revision(
    state: RevisionState,
    members: Sequence[Member],
    rule: PrivacyRule,
    definitions: Mapping[str, FacetDefinition],
    *,
    max_distance: float,
    request_id: str = "",
) -> NewRevision:
    """The revision after ``state`` with ``members`` added (see the module docstring for the rule)."""
    revision = state.revision + 1
    arriving: dict[str, list[Member]] = {}
    for member in members:
        if member.cluster_id:
            arriving.setdefault(member.cluster_id, []).append(member)
    pending = dict(state.pending)
    released: list[Member] = []
    for cluster_id, new in arriving.items():
        candidates = [*pending.get(cluster_id, ()), *new]
        if rule.passes(len(candidates), len({m.user for m in candidates})):
            released.extend(candidates)
            pending.pop(cluster_id, None)
        else:
            pending[cluster_id] = candidates

    chains = ancestors(state.clusters)
    reaching: dict[str, list[Member]] = {}
    for member in released:
        for cluster_id in chains.get(member.cluster_id, [member.cluster_id]):
            reaching.setdefault(cluster_id, []).append(member)
    delta: dict[str, list] = {}
    if released:
        builder = DistributionBuilder(definitions)
        for member in released:
            for value in member.values:
                if not value.failed:
                    builder.add(member.cluster_id, value.facet, value.text, value.number)
        delta = builder.build([item.cluster for item in state.clusters], counted_facets(state.clusters))

    users = dict(state.users)
    clusters: list[ClusterWithFacets] = []
    for item in state.clusters:
        node = item.cluster
        joined = reaching.get(node.id)
        if not joined:
            clusters.append(item)
            continue
        mine = users[node.id] = {*users.get(node.id, set()), *(m.user for m in joined)}
        grown = replace(node, size=node.size + len(joined), distinct_users=len(mine))
        clusters.append(ClusterWithFacets(grown, merge(item.facets, delta.get(node.id, []))))

    own = {m.ordinal for m in members}
    released_ordinals = {m.ordinal for m in released}
    earlier = sorted(released_ordinals - own)
    held_back = sum(1 for m in members if m.cluster_id and m.ordinal not in released_ordinals)
    summary = RevisionSummary(
        revision=revision,
        total=state.summary.total + len(members),
        withheld=state.summary.withheld - len(earlier) + held_back,
        unassigned=state.summary.unassigned + sum(1 for m in members if not m.cluster_id),
        max_distance=max_distance,
    )
    after = RevisionState(summary=summary, clusters=clusters, users=users, pending=pending)
    return NewRevision(
        summary=summary,
        request_id=request_id,
        members=list(members),
        released=released_ordinals & own,
        released_earlier=earlier,
        clusters=clusters,
        state=after,
    )


def base_state(
    summary: RevisionSummary,
    clusters: list[ClusterWithFacets],
    member_users: Mapping[str, set[str]],
    pending: Sequence[Member],
) -> RevisionState:
    """A revision's state from the user keys of each base cluster's reported conversations (the higher
    levels take the union of their children's) and the added conversations it holds back."""
    chains = ancestors(clusters)
    users: dict[str, set[str]] = {item.cluster.id: set() for item in clusters}
    for cluster_id, keys in member_users.items():
        for up in chains.get(cluster_id, [cluster_id]):
            users.setdefault(up, set()).update(keys)
    held: dict[str, list[Member]] = {}
    for member in pending:
        held.setdefault(member.cluster_id, []).append(member)
    return RevisionState(summary=summary, clusters=clusters, users=users, pending=held)
