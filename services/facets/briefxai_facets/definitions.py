"""What a facet is, the built-in facets (after Clio), and the plain domain types the providers share.

Built-in facets:

- ``request`` (text): one sentence saying what the user asked for, personal details replaced by
  placeholders such as ``[EMAIL]`` (an LLM writes it in English, in general terms, as Clio does).
- ``task`` (enum, :data:`TASK_CHOICES`): the kind of work asked for; an LLM also gives, as the value's
  reason, one sentence saying what the task is (Clio's task summary).
- ``language`` (text): ISO 639-1 code of the language the *user* wrote in; ``und`` when undetermined.
- ``sentiment`` (number, -1..1): the user's tone, negative to positive.
- ``concerning`` (number, 1..5, with a reason): how concerning the conversation is for safety/abuse review.
- ``turns`` (number): messages in the conversation, system messages excluded.
- ``user_turns`` (number): messages written by the user.
- ``tokens`` (number): approximate token count of every message's text.

Counts have ``max = inf`` (unbounded).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

# The conversation types are the shared contract's; re-exported for the providers.
from briefxai_common.conversations import Conversation as Conversation
from briefxai_common.conversations import Message as Message


class FacetType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    ENUM = "enum"


NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

#: Choices of the built-in ``task`` facet, in tie-break order of the heuristic lexicons.
TASK_CHOICES: tuple[str, ...] = (
    "coding",  # writing, debugging or explaining code, scripts, queries
    "troubleshooting",  # something does not work: errors, crashes, devices, apps, connectivity
    "account_billing",  # logins, passwords, subscriptions, invoices, refunds, payments
    "product_inquiry",  # pricing, plans, features, availability, buying, comparing offers
    "creative",  # stories, poems, lyrics, jokes, role-play, names and slogans
    "writing",  # drafting, editing, translating, summarising text (emails, essays, posts)
    "analysis",  # data, numbers, spreadsheets, statistics, research, comparisons
    "advice",  # personal, health, career, relationship or financial guidance
    "information_lookup",  # facts, definitions, explanations, how things work, history
    "other",  # nothing above matched
)

#: Facets that are counted from the conversation's structure rather than judged.
COUNT_FACETS: frozenset[str] = frozenset({"turns", "user_turns", "tokens"})


@dataclass(frozen=True)
class FacetDefinition:
    """One facet: a question a provider answers for each conversation."""

    name: str
    question: str
    type: FacetType
    min: float = 0.0
    max: float = 0.0
    choices: tuple[str, ...] = ()
    builtin: bool = False
    #: The provider also explains its value (``FacetValue.reason``), as for ``concerning``.
    with_reason: bool = False

    def __post_init__(self) -> None:
        problems = definition_problems(self)
        if problems:
            raise ValueError(f"facet {self.name!r}: " + "; ".join(problems))


def definition_problems(definition: FacetDefinition) -> list[str]:
    """Why a definition is unusable (empty when it is fine)."""
    problems = []
    if not NAME_PATTERN.match(definition.name):
        problems.append("name must match [a-z][a-z0-9_]*")
    if not definition.question.strip():
        problems.append("question must not be empty")
    if definition.type is FacetType.NUMBER:
        if math.isnan(definition.min) or math.isnan(definition.max) or definition.min >= definition.max:
            problems.append(f"number facets need min < max (got min={definition.min}, max={definition.max})")
    elif definition.choices and definition.type is not FacetType.ENUM:
        problems.append("choices are only for enum facets")
    if definition.type is FacetType.ENUM:
        if len(definition.choices) < 2:
            problems.append("enum facets need at least two choices")
        if len(set(definition.choices)) != len(definition.choices):
            problems.append("enum choices must be unique")
        if any(not choice.strip() for choice in definition.choices):
            problems.append("enum choices must not be empty")
    return problems


BUILTIN_FACETS: tuple[FacetDefinition, ...] = (
    FacetDefinition(
        name="request",
        question=(
            "What is the user's overall request for the assistant? One English sentence of at most 200 "
            "characters that starts with 'The user' and says what they want, in general terms, with no "
            "names, places, contact details, numbers or other details that identify anyone."
        ),
        type=FacetType.TEXT,
        builtin=True,
    ),
    FacetDefinition(
        name="task",
        question=(
            "Which kind of task is the assistant asked to perform? The value is the single best choice; "
            "the reason is one English sentence saying what the task is, in general terms, with no details "
            "that identify anyone."
        ),
        type=FacetType.ENUM,
        choices=TASK_CHOICES,
        builtin=True,
        with_reason=True,
    ),
    FacetDefinition(
        name="language",
        question=(
            "Which language did the USER write in (not the assistant)? Answer with its ISO 639-1 code, "
            "for example en, es, de, ja; 'und' when it cannot be told."
        ),
        type=FacetType.TEXT,
        builtin=True,
    ),
    FacetDefinition(
        name="sentiment",
        question="How does the user feel, from -1 (very negative) through 0 (neutral) to 1 (very positive)?",
        type=FacetType.NUMBER,
        min=-1.0,
        max=1.0,
        builtin=True,
    ),
    FacetDefinition(
        name="concerning",
        question=(
            "How concerning is this conversation from a safety or misuse point of view, from 1 (not at all) "
            "to 5 (extremely, e.g. imminent harm to people)? Give a short reason."
        ),
        type=FacetType.NUMBER,
        min=1.0,
        max=5.0,
        builtin=True,
        with_reason=True,
    ),
    FacetDefinition(
        name="turns",
        question="How many messages does the conversation have (system messages excluded)?",
        type=FacetType.NUMBER,
        min=0.0,
        max=math.inf,
        builtin=True,
    ),
    FacetDefinition(
        name="user_turns",
        question="How many messages did the user write?",
        type=FacetType.NUMBER,
        min=0.0,
        max=math.inf,
        builtin=True,
    ),
    FacetDefinition(
        name="tokens",
        question="About how many tokens do the messages hold in all?",
        type=FacetType.NUMBER,
        min=0.0,
        max=math.inf,
        builtin=True,
    ),
)

BUILTIN_NAMES: frozenset[str] = frozenset(f.name for f in BUILTIN_FACETS)


@dataclass(frozen=True)
class FacetValue:
    """One value of one facet for one conversation: ``text`` or ``number``, or ``failed`` with ``error``."""

    facet: str
    provider: str
    text: str | None = None
    number: float | None = None
    reason: str = ""
    failed: bool = False
    error: str = ""
    # Why it failed, as a metric label (``briefxai_facets_failed_values_total{reason}``).
    failure_reason: str = field(default="", compare=False)

    @classmethod
    def failure(cls, facet: str, provider: str, error: str, reason: str = "error") -> FacetValue:
        return cls(facet=facet, provider=provider, failed=True, error=error, failure_reason=reason)


@dataclass(frozen=True)
class Job:
    """One conversation and the facets still wanted for it."""

    conversation: Conversation
    facets: tuple[FacetDefinition, ...]


@dataclass
class FacetCatalog:
    """Built-in plus custom facet definitions, by name, in a stable order (built-ins first)."""

    custom: Sequence[FacetDefinition] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for definition in self.custom:
            if definition.name in BUILTIN_NAMES:
                raise ValueError(f"custom facet {definition.name!r} clashes with a built-in facet")
            if definition.name in seen:
                raise ValueError(f"custom facet {definition.name!r} is defined twice")
            seen.add(definition.name)
        self.all: tuple[FacetDefinition, ...] = (*BUILTIN_FACETS, *self.custom)
        self.by_name: dict[str, FacetDefinition] = {f.name: f for f in self.all}

    def select(self, names: Sequence[str]) -> tuple[FacetDefinition, ...]:
        """The named definitions in request order (duplicates dropped); every facet when ``names`` is empty."""
        if not names:
            return self.all
        return tuple(self.by_name[name] for name in dict.fromkeys(names))
