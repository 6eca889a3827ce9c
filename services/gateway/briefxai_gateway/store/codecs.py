"""How values are stored as text: compact JSON, facet value lists, messages, facet definitions."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from ..models import FacetDefinition, FacetDistribution, FacetType, FacetValue, Message


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encode_facets(values: Sequence[FacetValue]) -> str:
    """[[facet, text, number, provider, reason, failed, error], ...] with trailing defaults dropped."""
    items = []
    for v in values:
        item: list[Any] = [v.facet, v.text, v.number, v.provider, v.reason, v.failed, v.error]
        while len(item) > 1 and item[-1] in (None, "", False):
            item.pop()
        items.append(item)
    return dumps(items)


def decode_facets(text: str) -> list[FacetValue]:
    result = []
    for item in json.loads(text):
        n = len(item)
        number = item[2] if n > 2 else None
        result.append(
            FacetValue(
                facet=item[0],
                text=item[1] if n > 1 else None,
                number=None if number is None else float(number),
                provider=(item[3] or "") if n > 3 else "",
                reason=(item[4] or "") if n > 4 else "",
                failed=bool(item[5]) if n > 5 else False,
                error=(item[6] or "") if n > 6 else "",
            )
        )
    return result


def iter_decoded(text: str) -> Iterator[tuple[str, str | None, float | None]]:
    """(facet, text, number) of the successful values in an encoded list, without building objects."""
    for item in json.loads(text):
        n = len(item)
        if n > 5 and item[5]:
            continue
        yield item[0], (item[1] if n > 1 else None), (item[2] if n > 2 else None)


def encode_messages(messages: Sequence[Message]) -> str:
    return dumps([[m.role, m.content] for m in messages])


def decode_messages(text: str) -> list[Message]:
    return [Message(role, content) for role, content in json.loads(text)]


def encode_distributions(distributions: Sequence[FacetDistribution]) -> str:
    """A cluster's facet distributions: [{facet, counts, mean}, ...]."""
    return dumps([{"facet": d.facet, "counts": d.counts, "mean": d.mean} for d in distributions])


def decode_distributions(text: str) -> list[FacetDistribution]:
    return [
        FacetDistribution(
            facet=item["facet"],
            counts={str(k): int(v) for k, v in item["counts"].items()},
            mean=item.get("mean"),
        )
        for item in json.loads(text)
    ]


def definitions_to_json(definitions: Sequence[FacetDefinition]) -> str:
    return dumps(
        [
            {
                "name": d.name,
                "type": d.type.value,
                "min": d.min,
                "max": d.max,
                "choices": list(d.choices),
                "builtin": d.builtin,
            }
            for d in definitions
        ]
    )


def definitions_from_json(text: str) -> list[FacetDefinition]:
    return [
        FacetDefinition(
            name=item["name"],
            type=FacetType(item["type"]),
            min=float(item.get("min", 0.0)),
            max=float(item.get("max", 0.0)),
            choices=tuple(item.get("choices", ())),
            builtin=bool(item.get("builtin", False)),
        )
        for item in json.loads(text)
    ]
