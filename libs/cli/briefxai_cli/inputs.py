"""Reads conversations from JSONL, a JSON array or CSV into plain records, with per-record errors.

The shape is OpenAI's chat format::

    {"id": "c1", "user_id": "u1", "messages": [{"role": "user", "content": "..."}], "metadata": {"k": "v"}}

CSV files have one row per message: ``conversation_id,role,content`` with an optional ``user_id``
column; any other column (``label`` or ``metadata.label``) becomes metadata. Rows are grouped by
``conversation_id`` in order of first appearance.

Every record is either accepted or reported with its line number, the field at fault and why; nothing
is dropped silently. This module knows nothing of gRPC.

Reading a record has three steps:

1. Its shape is parsed with pydantic (``_ConversationIn``): ids may be strings or integers and are
   stripped, roles are matched case-insensitively with the aliases of
   :data:`briefxai_common.conversations.ROLE_ALIASES`, OpenAI content-part arrays are joined, metadata
   values are written as text. A field of the wrong type is reported here.
2. Reader normalisation: messages whose text is empty (or only white space) are left out, each with a
   warning, as are non-text content parts.
3. The normalised conversation must then meet the same contract the gateway applies,
   :func:`briefxai_common.conversations.check_conversations` with the gateway's default limits, so a
   record this reader accepts is not refused by a gateway running with the defaults. Ids must also be
   unique within the file; a duplicate names the line of the first accepted record with that id.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from briefxai_common.conversations import (
    ROLE_NAMES,
    ROLES,
    Conversation,
    ConversationLimits,
    Message,
    Role,
    Violations,
    check_conversations,
    parse_role,
)

__all__ = [
    "CSV_REQUIRED",
    "LIMITS",
    "MAX_MESSAGE_CHARS",
    "ROLES",
    "ConversationRecord",
    "Format",
    "InputError",
    "InputFileError",
    "InputResult",
    "Message",
    "guess_format",
    "parse_conversations",
    "read_conversations",
    "record_from_object",
]

Format = Literal["jsonl", "json", "csv"]

# The gateway's default limits; records beyond them are rejected here with their line number.
LIMITS = ConversationLimits()
MAX_MESSAGE_CHARS = LIMITS.max_message_chars
CSV_REQUIRED = ("conversation_id", "role", "content")
CSV_FIELD_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class ConversationRecord:
    """One accepted conversation; ``line`` is where it starts in the input file (1-based)."""

    id: str
    user_id: str
    messages: tuple[Message, ...]
    metadata: dict[str, str]
    line: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class InputError:
    """Why one record (or part of the file) was rejected."""

    line: int
    field: str
    reason: str
    record_id: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.record_id:
            where += f" (id {self.record_id!r})"
        return f"{where}: {self.field}: {self.reason}"


@dataclass
class InputResult:
    records: list[ConversationRecord] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    # Accepted records that were changed: empty messages or non-text content parts left out.
    warnings: list[InputError] = field(default_factory=list)
    format: Format = "jsonl"
    # Records seen (accepted + rejected); rejected records may carry several errors each.
    seen: int = 0

    @property
    def rejected(self) -> int:
        return self.seen - len(self.records)


class InputFileError(Exception):
    """The file as a whole cannot be read (missing, unreadable)."""


# --------------------------------------------------------------------------------------------------
# Public entry points


def read_conversations(path: str | Path, fmt: Format | None = None) -> InputResult:
    """Reads ``path``; the format comes from ``fmt``, the file extension, or the first character."""
    file_path = Path(path)
    try:
        data = file_path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read {file_path}: {exc.strerror or exc}") from exc
    return parse_conversations(data, fmt or guess_format(file_path, data))


def guess_format(path: Path, data: bytes) -> Format:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"[":
        return "json"
    if head == b"{" or suffix == ".json":
        return "jsonl"
    return "csv"


def parse_conversations(data: bytes, fmt: Format) -> InputResult:
    if fmt == "jsonl":
        return _parse_jsonl(data)
    if fmt == "json":
        return _parse_json_array(data)
    if fmt == "csv":
        return _parse_csv(data)
    raise ValueError(f"unknown format {fmt!r}")


def record_from_object(
    obj: Any, line: int, seen_ids: dict[str, int], warnings: list[InputError] | None = None
) -> ConversationRecord | list[InputError]:
    """Validates one decoded JSON value; returns the record or every problem found in it.

    Empty messages are left out of an accepted record; each one is noted in ``warnings``.
    """
    try:
        parsed = _ConversationIn.model_validate(obj)
    except ValidationError as exc:
        record_id = _shown_id(obj.get("id", obj.get("conversation_id"))) if isinstance(obj, dict) else None
        return [InputError(line, _error_field(e), _error_reason(e), record_id) for e in exc.errors()]

    notes: list[InputError] = []
    messages: list[Message] = []
    kept: list[int] = []  # index in the record of each message kept
    for i, message in enumerate(parsed.messages):
        where = f"messages[{i}].content"
        notes.extend(
            InputError(line, f"{where}[{j}]", f"non-text part ({kind}) left out")
            for j, kind in message.content.skipped
        )
        if message.content.text.strip():
            messages.append(Message(message.role.value, message.content.text))
            kept.append(i)
        else:
            notes.append(InputError(line, where, "is empty; message left out"))
    conversation = Conversation(parsed.id, parsed.user_id, messages, parsed.metadata)

    record_id = _shown_id(parsed.id)
    errors = [_json_error(line, kept, v, record_id) for v in _contract_violations(conversation)]
    first = seen_ids.get(parsed.id)
    if not errors and first is not None:
        errors.append(InputError(line, "id", f"duplicate id, first seen on line {first}", record_id))
    if errors:
        return errors
    seen_ids[parsed.id] = line
    if warnings is not None:
        warnings.extend(InputError(n.line, n.field, n.reason, parsed.id) for n in notes)
    return ConversationRecord(parsed.id, parsed.user_id, tuple(messages), parsed.metadata, line)


def _json_error(line: int, kept: list[int], violation: _Violation, record_id: str | None) -> InputError:
    if violation.message is not None:
        field = f"messages[{kept[violation.message]}].{violation.field}"
        return InputError(line, field, violation.reason, record_id)
    if violation.field == "messages" and not kept:
        return InputError(line, "messages", "no message has any text", record_id)
    return InputError(line, violation.field, violation.reason, record_id)


# --------------------------------------------------------------------------------------------------
# JSONL / JSON


def _parse_jsonl(data: bytes) -> InputResult:
    result = InputResult(format="jsonl")
    seen_ids: dict[str, int] = {}
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        result.seen += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            result.errors.append(InputError(number, "record", f"not valid UTF-8 (byte {exc.start + 1})"))
            continue
        try:
            obj = json.loads(text)
        except RecursionError:
            result.errors.append(InputError(number, "record", "invalid JSON: nested too deeply"))
            continue
        except ValueError as exc:
            result.errors.append(InputError(number, "record", f"invalid JSON: {_json_reason(exc)}"))
            continue
        _add(result, record_from_object(obj, number, seen_ids, result.warnings))
    return result


def _parse_json_array(data: bytes) -> InputResult:
    result = InputResult(format="json")
    seen_ids: dict[str, int] = {}
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        result.errors.append(InputError(line, "file", f"not valid UTF-8 (byte {exc.start + 1})"))
        return result
    for line, value in _iter_array(text, result):
        result.seen += 1
        _add(result, record_from_object(value, line, seen_ids, result.warnings))
    return result


def _iter_array(text: str, result: InputResult) -> Iterator[tuple[int, Any]]:
    """Yields (start line, value) for each element; a syntax error ends the file with one error."""
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "[":
        result.errors.append(InputError(_line_at(text, pos), "file", "a JSON array must start with '['"))
        return
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        _check_trailing(text, pos + 1, result)
        return
    while True:
        line = _line_at(text, pos)
        try:
            value, end = decoder.raw_decode(text, pos)
        except RecursionError:
            result.errors.append(InputError(line, "record", "invalid JSON: nested too deeply; rest not read"))
            return
        except ValueError as exc:
            reason = _json_reason(exc)
            result.errors.append(InputError(line, "record", f"invalid JSON: {reason}; rest of file not read"))
            return
        yield line, value
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            _check_trailing(text, pos + 1, result)
            return
        result.errors.append(
            InputError(
                _line_at(text, pos), "file", "expected ',' or ']' after an array element; rest not read"
            )
        )
        return


def _check_trailing(text: str, pos: int, result: InputResult) -> None:
    pos = _skip_ws(text, pos)
    if pos < len(text):
        result.errors.append(InputError(_line_at(text, pos), "file", "unexpected text after the JSON array"))


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        message = exc.msg[:1].lower() + exc.msg[1:]
        joiner = " " if message.endswith(" at") else " at "
        return f"{message}{joiner}column {exc.colno}"
    return str(exc)


# --------------------------------------------------------------------------------------------------
# CSV


@dataclass
class _CsvConversation:
    line: int
    user_id: str = ""
    user_id_line: int = 0
    messages: list[Message] = field(default_factory=list)
    message_lines: list[int] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    errors: list[InputError] = field(default_factory=list)
    notes: list[InputError] = field(default_factory=list)


def _parse_csv(data: bytes) -> InputResult:
    result = InputResult(format="csv")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        result.errors.append(InputError(line, "file", f"not valid UTF-8 (byte {exc.start + 1})"))
        return result
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = _next_row(reader, result)
    while header is not None and not any(cell.strip() for cell in header):
        header = _next_row(reader, result)
    if header is None:
        if not result.errors:
            result.errors.append(InputError(1, "header", "the CSV file is empty"))
        return result
    columns = [cell.strip().lower() for cell in header]
    missing = [name for name in CSV_REQUIRED if name not in columns]
    if missing:
        result.errors.append(
            InputError(reader.line_num, "header", f"missing column(s): {', '.join(missing)}")
        )
        return result
    index = {name: columns.index(name) for name in (*CSV_REQUIRED, "user_id") if name in columns}
    extra = [
        (i, name.removeprefix("metadata."))
        for i, name in enumerate(columns)
        if name.removeprefix("metadata.") and name not in index
    ]

    conversations: dict[str, _CsvConversation] = {}
    orphans: list[InputError] = []
    while True:
        start = reader.line_num + 1
        row = _next_row(reader, result)
        if row is None:
            break
        if not any(cell.strip() for cell in row):
            continue
        line = start
        if len(row) > len(columns):
            orphans.append(InputError(line, "row", f"has {len(row)} cells but the header has {len(columns)}"))
            continue

        def cell(i: int, row: list[str] = row) -> str:
            return row[i] if i < len(row) else ""

        conv_id = cell(index["conversation_id"]).strip()
        if not conv_id:
            orphans.append(InputError(line, "conversation_id", "is empty"))
            continue
        conv = conversations.get(conv_id)
        if conv is None:
            conv = conversations[conv_id] = _CsvConversation(line)
        _csv_row(conv, line, cell, index, extra)

    result.errors.extend(orphans)
    result.seen += len(orphans)
    for conv_id, conv in conversations.items():
        result.seen += 1
        if not conv.errors:
            conversation = Conversation(conv_id, conv.user_id, conv.messages, conv.metadata)
            conv.errors.extend(_csv_error(conv, v) for v in _contract_violations(conversation))
        if conv.errors:
            result.errors.extend(InputError(e.line, e.field, e.reason, conv_id) for e in conv.errors)
            continue
        result.records.append(
            ConversationRecord(conv_id, conv.user_id, tuple(conv.messages), conv.metadata, conv.line)
        )
        result.warnings.extend(InputError(n.line, n.field, n.reason, conv_id) for n in conv.notes)
    result.errors.sort(key=lambda e: e.line)
    result.warnings.sort(key=lambda e: e.line)
    return result


def _csv_row(
    conv: _CsvConversation,
    line: int,
    cell: Any,
    index: dict[str, int],
    extra: list[tuple[int, str]],
) -> None:
    """Adds one row to its conversation. The text was decoded as strict UTF-8, so it is valid Unicode."""
    try:
        message = _MessageIn.model_validate({"role": cell(index["role"]), "content": cell(index["content"])})
    except ValidationError as exc:
        conv.errors.extend(InputError(line, _error_field(e), _error_reason(e)) for e in exc.errors())
    else:
        if message.content.text.strip():
            conv.messages.append(Message(message.role.value, message.content.text))
            conv.message_lines.append(line)
        else:
            conv.notes.append(InputError(line, "content", "is empty; message left out"))
    if "user_id" in index:
        user_id = cell(index["user_id"]).strip()
        if user_id and conv.user_id and user_id != conv.user_id:
            conv.errors.append(
                InputError(
                    line,
                    "user_id",
                    f"{user_id!r} differs from {conv.user_id!r} on line {conv.user_id_line} of the same conversation",
                )
            )
        elif user_id and not conv.user_id:
            conv.user_id, conv.user_id_line = user_id, line
    for i, key in extra:
        value = cell(i)
        if value and key not in conv.metadata:
            conv.metadata[key] = value


def _csv_error(conv: _CsvConversation, violation: _Violation) -> InputError:
    """Places a contract violation on the row it comes from; ``id`` is the ``conversation_id`` column."""
    if violation.message is not None:
        return InputError(conv.message_lines[violation.message], violation.field, violation.reason)
    if violation.field == "user_id":
        return InputError(conv.user_id_line, "user_id", violation.reason)
    if violation.field == "messages" and not conv.messages:
        return InputError(conv.line, "content", "no message of the conversation has any text")
    field = "conversation_id" if violation.field in ("id", "messages") else violation.field
    return InputError(conv.line, field, violation.reason)


def _next_row(reader: Any, result: InputResult) -> list[str] | None:
    """The next CSV row; a malformed row is reported and skipped."""
    while True:
        before = reader.line_num
        try:
            row: list[str] = next(reader)
            return row
        except StopIteration:
            return None
        except csv.Error as exc:
            result.seen += 1
            result.errors.append(InputError(max(before + 1, reader.line_num), "row", f"malformed CSV: {exc}"))
            if reader.line_num == before:
                return None


# --------------------------------------------------------------------------------------------------
# Record schema: one JSON record, parsed with pydantic; every failure names its field and says why.


def _add(result: InputResult, outcome: ConversationRecord | list[InputError]) -> None:
    if isinstance(outcome, ConversationRecord):
        result.records.append(outcome)
    else:
        result.errors.extend(outcome)


def _invalid(reason: str, **context: object) -> PydanticCustomError:
    """A validation failure whose message is ``reason`` (passed as context so braces stay literal)."""
    return PydanticCustomError("invalid_input", "{reason}", {"reason": reason, **context})


def _unicode(text: str) -> str:
    if not _valid_text(text):
        raise _invalid("contains invalid Unicode (a lone surrogate)")
    return text


def _optional_id(value: Any) -> str:
    """A string or an integer, stripped; null is ""."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _invalid(f"must be a string, got {_json_type(value)}")
    return _unicode(str(value).strip())


def _required_id(value: Any) -> str:
    if value is None:
        raise _invalid("is missing")
    text = _optional_id(value)
    if not text:
        raise _invalid("is empty")
    return text


def _role(value: Any) -> Role:
    if value is None:
        raise _invalid("is missing")
    role = parse_role(value) if isinstance(value, str) else None
    if role is None:
        raise _invalid(f"must be one of {ROLE_NAMES}, got {value!r}")
    return role


class _Content(BaseModel):
    """A message's text; ``skipped`` holds (part index, repr of its type) of the non-text parts left out."""

    text: str = ""
    skipped: tuple[tuple[int, str], ...] = ()


def _content(value: Any) -> _Content:
    """A string, or the text parts of OpenAI's content-parts list joined by newlines; null counts as empty."""
    if value is None:
        return _Content()
    if isinstance(value, str):
        return _Content(text=_unicode(value))
    if not isinstance(value, list):
        raise _invalid(f"must be a string, got {_json_type(value)}")
    parts: list[str] = []
    skipped: list[tuple[int, str]] = []
    for j, part in enumerate(value):
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif isinstance(part, dict) and part.get("type") not in (None, "text"):
            skipped.append((j, repr(part.get("type"))))
        else:
            raise _invalid("a content part must be a string or {'text': ...}", part=j)
    return _Content(text=_unicode("\n".join(parts)), skipped=tuple(skipped))


def _messages(value: Any) -> Any:
    if value is None:
        raise _invalid("is missing")
    if not isinstance(value, list):
        raise _invalid(f"must be an array, got {_json_type(value)}")
    if not value:
        raise _invalid("is empty; a conversation needs at least one message")
    return value


def _metadata(value: Any) -> Any:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"must be an object, got {_json_type(value)}")
    return value


def _metadata_value(value: Any) -> str:
    """Strings as they are, null as "", anything else as compact JSON."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else _stringify(value)
    if text is None:
        raise _invalid("value cannot be written as text")
    return _unicode(text)


_Id = Annotated[str, BeforeValidator(_required_id)]
_ID = TypeAdapter(_Id)


class _MessageIn(BaseModel):
    role: Annotated[Role, BeforeValidator(_role)]
    content: Annotated[_Content, BeforeValidator(_content)] = Field(default_factory=_Content)

    @model_validator(mode="before")
    @classmethod
    def _object(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise _invalid(f"must be an object, got {_json_type(value)}")
        return value


class _ConversationIn(BaseModel):
    id: _Id
    user_id: Annotated[str, BeforeValidator(_optional_id)] = ""
    messages: Annotated[list[_MessageIn], BeforeValidator(_messages)]
    metadata: Annotated[
        dict[Annotated[str, AfterValidator(_unicode)], Annotated[str, BeforeValidator(_metadata_value)]],
        BeforeValidator(_metadata),
    ] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _record(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise _invalid(f"must be a JSON object, got {_json_type(value)}")
        if "id" not in value and "conversation_id" in value:
            return {**value, "id": value["conversation_id"]}
        return value


def _error_field(error: ErrorDetails) -> str:
    """``messages[0].content[2]`` for a pydantic error; a key that is not valid Unicode ends the path."""
    path = ""
    for item in error["loc"]:
        if isinstance(item, int):
            path += f"[{item}]"
        elif item == "[key]" or not _valid_text(item):
            break
        else:
            path += f".{item}" if path else item
    part = error.get("ctx", {}).get("part")
    if part is not None:
        path += f"[{part}]"
    return path or "record"


def _error_reason(error: ErrorDetails) -> str:
    return "is missing" if error["type"] == "missing" else error["msg"]


def _shown_id(value: Any) -> str | None:
    """The id to name in an error: only a valid one, within the length limit."""
    try:
        text = _ID.validate_python(value)
    except ValidationError:
        return None
    return text if len(text) <= LIMITS.max_id_chars else None


# --------------------------------------------------------------------------------------------------
# The shared contract, applied to one normalised conversation


@dataclass(frozen=True)
class _Violation:
    field: str  # "id", "user_id", "messages", "record"; or "role"/"content" of message ``message``
    message: int | None
    reason: str


_CONTRACT_PATH = re.compile(r"conversations\[0\]\.(?P<field>\w+)(?:\[(?P<message>\d+)\]\.(?P<part>\w+))?")


def _contract_violations(conversation: Conversation) -> list[_Violation]:
    """How ``conversation`` breaks :func:`check_conversations` with the gateway's default limits."""
    violations = Violations()
    check_conversations([conversation], LIMITS, violations)
    found: list[_Violation] = []
    for path, reason in violations.reported():
        match = _CONTRACT_PATH.fullmatch(path)
        if match is None:  # the "... and N more" item
            found.append(_Violation("record", None, reason))
        elif match["message"] is None:
            found.append(_Violation(match["field"], None, reason))
        else:
            found.append(_Violation(match["part"], int(match["message"]), reason))
    return found


def _stringify(value: Any) -> str | None:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (ValueError, RecursionError):
        return None


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
