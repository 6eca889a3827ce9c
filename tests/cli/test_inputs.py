"""Reading conversations: JSONL, JSON arrays, CSV; per-record errors with line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from briefxai_cli.inputs import (
    MAX_MESSAGE_CHARS,
    InputFileError,
    guess_format,
    parse_conversations,
    read_conversations,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def conv(cid: str, *texts: str, **extra: object) -> dict[str, object]:
    roles = ["user", "assistant"]
    return {
        "id": cid,
        "user_id": "u1",
        "messages": [{"role": roles[i % 2], "content": t} for i, t in enumerate(texts)],
        **extra,
    }


def jsonl(*items: object) -> bytes:
    return "\n".join(item if isinstance(item, str) else json.dumps(item) for item in items).encode()


def test_bad_records_example_reports_every_broken_line() -> None:
    result = read_conversations(EXAMPLES / "bad_records.jsonl")
    assert [r.id for r in result.records] == ["good-1", "good-2", "good-3"]
    assert [r.line for r in result.records] == [1, 5, 11]
    by_line = {e.line: (e.field, e.reason) for e in result.errors}
    assert sorted(by_line) == [2, 3, 4, 6, 7, 8, 9, 12, 13]
    assert by_line[2][0] == "record" and "invalid JSON" in by_line[2][1]
    assert by_line[3] == ("messages", "is missing")
    assert by_line[4][0] == "messages[0].role" and "'robot'" in by_line[4][1]
    assert by_line[6][0] == "messages"
    assert by_line[7] == ("record", "must be a JSON object, got an array")
    assert by_line[8] == ("messages[0].content", "must be a string, got a number")
    assert by_line[9] == ("id", "duplicate id, first seen on line 1")
    assert by_line[12] == ("metadata", "must be an object, got a string")
    assert by_line[13] == ("id", "is empty")
    assert result.seen == 12 and result.rejected == 9
    assert str(result.errors[1]) == "line 3 (id 'no-messages'): messages: is missing"


def test_metadata_values_are_stringified() -> None:
    record = conv("a", "hi", metadata={"n": 5, "f": 1.5, "b": True, "none": None, "list": [1, "x"], "s": "t"})
    result = parse_conversations(jsonl(record), "jsonl")
    assert not result.errors
    assert result.records[0].metadata == {
        "n": "5",
        "f": "1.5",
        "b": "true",
        "none": "",
        "list": '[1, "x"]',
        "s": "t",
    }


def test_ids_may_be_integers_and_roles_are_normalised() -> None:
    record = {
        "id": 17,
        "user_id": 3,
        "messages": [{"role": " User ", "content": "x"}, {"role": "AI", "content": "y"}],
    }
    result = parse_conversations(jsonl(record), "jsonl")
    assert not result.errors
    [parsed] = result.records
    assert (parsed.id, parsed.user_id) == ("17", "3")
    assert [m.role for m in parsed.messages] == ["user", "assistant"]


def test_openai_content_parts_are_joined_and_empty_messages_left_out_with_a_warning() -> None:
    record = {
        "id": "a",
        "messages": [
            {"role": "system", "content": ""},
            {
                "role": "user",
                "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {}}],
            },
            {"role": "assistant", "content": None},
            {"role": "assistant", "content": ["plain", {"type": "text", "text": "parts"}]},
        ],
    }
    result = parse_conversations(jsonl(record), "jsonl")
    assert not result.errors
    [parsed] = result.records
    assert [(m.role, m.content) for m in parsed.messages] == [("user", "look"), ("assistant", "plain\nparts")]
    fields = [w.field for w in result.warnings]
    assert fields == ["messages[0].content", "messages[1].content[1]", "messages[2].content"]
    assert all(w.record_id == "a" and w.line == 1 for w in result.warnings)


def test_conversation_with_only_empty_messages_is_rejected() -> None:
    result = parse_conversations(jsonl(conv("a", "  ", "")), "jsonl")
    assert not result.records
    assert [(e.field, e.reason) for e in result.errors] == [("messages", "no message has any text")]


def test_limits_and_invalid_unicode_are_rejected_per_record() -> None:
    too_long = conv("long", "x" * (MAX_MESSAGE_CHARS + 1))
    surrogate = '{"id": "s", "messages": [{"role": "user", "content": "bad \\ud800 text"}]}'
    long_id = conv("i" * 300, "hello")
    result = parse_conversations(jsonl(too_long, surrogate, long_id, conv("ok", "fine")), "jsonl")
    assert [r.id for r in result.records] == ["ok"]
    assert [(e.line, e.field) for e in result.errors] == [
        (1, "messages[0].content"),
        (2, "messages[0].content"),
        (3, "id"),
    ]
    assert "lone surrogate" in result.errors[1].reason


def test_records_meet_the_gateway_contract_after_empty_messages_are_left_out() -> None:
    too_many = conv("many", *["q"] * 1001)
    padded = conv("padded", *["q"] * 1000, "  ")
    long_user = {**conv("user", "hi"), "user_id": "u" * 257}
    result = parse_conversations(jsonl(too_many, padded, long_user), "jsonl")
    assert [r.id for r in result.records] == ["padded"]
    assert [(e.line, e.field, e.reason) for e in result.errors] == [
        (1, "messages", "at most 1000 messages per conversation"),
        (3, "user_id", "must be at most 256 characters"),
    ]
    assert [(w.line, w.field) for w in result.warnings] == [(2, "messages[1000].content")]


def test_jsonl_invalid_utf8_and_blank_lines() -> None:
    data = jsonl(conv("a", "hi")) + b"\n\n   \n\xff\xfe{}\n" + jsonl(conv("b", "yo"))
    result = parse_conversations(data, "jsonl")
    assert [r.id for r in result.records] == ["a", "b"]
    assert [(e.line, e.reason.split(" (")[0]) for e in result.errors] == [(4, "not valid UTF-8")]
    assert result.records[1].line == 5


def test_json_array_gives_line_numbers_of_elements() -> None:
    text = '[\n  {"id": "a", "messages": [{"role": "user", "content": "hi"}]},\n  {"id": "b"},\n  {"id": "c",\n   "messages": [{"role": "user", "content": "x"}]}\n]\n'
    result = parse_conversations(text.encode(), "json")
    assert [(r.id, r.line) for r in result.records] == [("a", 2), ("c", 4)]
    assert [(e.line, e.field) for e in result.errors] == [(3, "messages")]


def test_json_array_syntax_error_keeps_earlier_records_and_says_where() -> None:
    text = (
        '[{"id": "a", "messages": [{"role": "user", "content": "hi"}]},\n {"id": "b", oops}\n, {"id": "c"}]'
    )
    result = parse_conversations(text.encode(), "json")
    assert [r.id for r in result.records] == ["a"]
    assert len(result.errors) == 1
    assert result.errors[0].line == 2 and "rest of file not read" in result.errors[0].reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"id": "a"}', "a JSON array must start with '['"),
        ('[{"id": "a", "messages": [{"role": "user", "content": "x"}]}] trailing', "unexpected text after"),
        ('[{"id": "a", "messages": [{"role": "user", "content": "x"}]} {"id": "b"}]', "expected ',' or ']'"),
    ],
)
def test_json_array_structure_errors(text: str, reason: str) -> None:
    result = parse_conversations(text.encode(), "json")
    assert any(reason in e.reason for e in result.errors)


def test_empty_json_array() -> None:
    result = parse_conversations(b"  [ ]  ", "json")
    assert not result.records and not result.errors


CSV = """conversation_id,user_id,role,content,label,metadata.channel
c1,u1,user,"How do I reset my password?",support,web
c2,u2,user,Recipe for banana bread?,cooking,app
c1,,assistant,"Use the link on the sign-in page.
It is valid for 30 minutes.",,
c2,u2,assistant,Here is one.,,
c3,u3,robot,beep,x,
c3,u3,user,hello,x,
,u4,user,orphan row,,
c4,u4,user,hi,,
c4,u5,assistant,hello,,
c5,u6,user,   ,,
c5,u6,assistant,answer,,
"""


def test_csv_rows_are_grouped_into_conversations() -> None:
    result = parse_conversations(CSV.encode(), "csv")
    records = {r.id: r for r in result.records}
    assert sorted(records) == ["c1", "c2", "c5"]
    c1 = records["c1"]
    assert c1.user_id == "u1" and c1.line == 2
    assert [m.role for m in c1.messages] == ["user", "assistant"]
    assert c1.messages[1].content == "Use the link on the sign-in page.\nIt is valid for 30 minutes."
    assert c1.metadata == {"label": "support", "channel": "web"}
    assert records["c2"].metadata == {"label": "cooking", "channel": "app"}
    errors = [(e.line, e.field, e.record_id) for e in result.errors]
    assert errors == [(7, "role", "c3"), (9, "conversation_id", None), (11, "user_id", "c4")]
    assert [(w.line, w.record_id) for w in result.warnings] == [(12, "c5")]
    assert result.seen == 6


def test_csv_missing_columns_is_one_error() -> None:
    result = parse_conversations(b"id,text\n1,hello\n", "csv")
    assert not result.records
    assert [(e.line, e.field) for e in result.errors] == [(1, "header")]
    assert "conversation_id" in result.errors[0].reason and "role" in result.errors[0].reason


def test_csv_row_with_too_many_cells() -> None:
    result = parse_conversations(b"conversation_id,role,content\nc1,user,hi,extra\nc2,user,ok\n", "csv")
    assert [r.id for r in result.records] == ["c2"]
    assert [(e.line, e.field) for e in result.errors] == [(2, "row")]


def test_empty_csv() -> None:
    result = parse_conversations(b"", "csv")
    assert [(e.field, e.reason) for e in result.errors] == [("header", "the CSV file is empty")]


def test_guess_format() -> None:
    assert guess_format(Path("a.jsonl"), b"") == "jsonl"
    assert guess_format(Path("a.csv"), b"{") == "csv"
    assert guess_format(Path("a.json"), b"  [") == "json"
    assert guess_format(Path("a.json"), b'{"id": 1}\n{"id": 2}') == "jsonl"
    assert guess_format(Path("a.txt"), b"\xef\xbb\xbf[") == "json"
    assert guess_format(Path("data"), b"conversation_id,role,content") == "csv"


def test_missing_file_is_an_input_file_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot read"):
        read_conversations(tmp_path / "nope.jsonl")


def test_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + jsonl(conv("a", "hi")))
    assert [r.id for r in read_conversations(path).records] == ["a"]
