"""Property tests: junk input never crashes the reader and nothing is dropped silently."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from briefxai_cli.client import to_proto
from briefxai_cli.inputs import LIMITS, ROLES, parse_conversations
from briefxai_common.conversations import Violations, check_conversations

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

# Objects that are close to conversations, so validation (not just JSON parsing) is exercised.
messages = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from([*ROLES, "robot", "", "USER"]) | json_values,
            "content": st.text(max_size=30) | json_values,
        },
    )
    | json_values,
    max_size=4,
)
near_conversations = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=10) | st.integers() | json_values,
        "user_id": st.text(max_size=10) | json_values,
        "messages": messages | json_values,
        "metadata": st.dictionaries(st.text(max_size=5), json_values, max_size=3) | json_values,
    },
)


def check_accepted(result: Any) -> None:
    for record in result.records:
        assert record.id and record.messages
        assert all(m.role in ROLES and m.content.strip() for m in record.messages)
        # Every accepted record is a valid protobuf message (valid UTF-8 everywhere).
        to_proto(record).SerializeToString()
    # What the reader accepts, the gateway (same contract, default limits) accepts too.
    violations = Violations()
    check_conversations(result.records, LIMITS, violations)
    assert not violations, violations.items


def check_jsonl_accounting(data: bytes) -> None:
    result = parse_conversations(data, "jsonl")
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    lines = [n for n, raw in enumerate(body.split(b"\n"), start=1) if raw.strip()]
    record_lines = [r.line for r in result.records]
    error_lines = {e.line for e in result.errors}
    # Every non-blank line became exactly one record or at least one error, never both, never neither.
    assert sorted(record_lines + sorted(error_lines)) == lines
    assert result.seen == len(lines)
    check_accepted(result)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_binary_junk_lines_never_crash(lines: list[bytes]) -> None:
    check_jsonl_accounting(b"\n".join(lines))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values | near_conversations, max_size=8))
def test_json_values_per_line_are_accounted_for(values: list[Any]) -> None:
    check_jsonl_accounting("\n".join(json.dumps(v) for v in values).encode())


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(near_conversations, max_size=6))
def test_json_array_of_near_conversations(values: list[Any]) -> None:
    text = json.dumps(values, indent=1)
    result = parse_conversations(text.encode(), "json")
    assert result.seen == len(values)
    # With indent, every element starts on its own line: each is one record or has errors on its line.
    record_lines = {r.line for r in result.records}
    error_lines = {e.line for e in result.errors}
    assert not (record_lines & error_lines)
    assert len(record_lines) + len(error_lines) == len(values)
    check_accepted(result)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_as_json_array_never_crashes(text: str) -> None:
    check_accepted(parse_conversations(text.encode("utf-8", "surrogatepass"), "json"))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_as_csv_never_crashes(text: str) -> None:
    check_accepted(parse_conversations(text.encode("utf-8", "surrogatepass"), "csv"))


csv_cells = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["c1", "c2", "", "c3"]), st.sampled_from(["user", "assistant", "x"]), csv_cells
        ),
        max_size=10,
    )
)
def test_csv_rows_with_header_never_crash(rows: list[tuple[str, str, str]]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["conversation_id", "role", "content"])
    writer.writerows(rows)
    result = parse_conversations(buffer.getvalue().encode(), "csv")
    check_accepted(result)
    assert {r.id for r in result.records} <= {"c1", "c2", "c3"}
    rejected_ids = {e.record_id for e in result.errors}
    assert not ({r.id for r in result.records} & rejected_ids)
