"""Reads conversations from JSONL, a JSON array or CSV into plain records, with per-record errors.

The shape is OpenAI's chat format::

    {"id": "c1", "user_id": "u1", "messages": [{"role": "user", "content": "..."}], "metadata": {"k": "v"}}

CSV files have one row per message: ``conversation_id,role,content`` with an optional ``user_id``
column; any other column (``label`` or ``metadata.label``) becomes metadata. Rows are grouped by
``conversation_id`` in order of first appearance.

Every record is either accepted or reported with its line number, the field at fault and why; nothing
is dropped silently. This module knows nothing of gRPC.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Format = Literal["jsonl", "json", "csv"]

ROLES = ("user", "assistant", "system", "tool")
# Accepted spellings that mean one of ROLES.
ROLE_ALIASES = {"developer": "system", "human": "user", "ai": "assistant", "bot": "assistant"}
MAX_ID_CHARS = 256
# The gateway's default limits; records beyond them are rejected here with their line number.
MAX_MESSAGES = 1000
MAX_MESSAGE_CHARS = 100_000
CSV_REQUIRED = ("conversation_id", "role", "content")
CSV_FIELD_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class Message:
    role: str
    content: str


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
    if not isinstance(obj, dict):
        return [InputError(line, "record", f"must be a JSON object, got {_json_type(obj)}")]
    errors: list[InputError] = []

    raw_id = obj.get("id", obj.get("conversation_id"))
    conv_id = _check_id(raw_id, "id", line, errors, required=True)
    record_id = conv_id if conv_id else None

    user_id = _check_id(obj.get("user_id"), "user_id", line, errors, required=False) or ""

    notes: list[InputError] = []
    messages = _check_messages(obj.get("messages"), line, errors, notes)
    metadata = _check_metadata(obj.get("metadata"), line, errors)

    if conv_id and not errors:
        first = seen_ids.get(conv_id)
        if first is not None:
            errors.append(InputError(line, "id", f"duplicate id, first seen on line {first}"))
    if errors:
        return [InputError(e.line, e.field, e.reason, record_id) for e in errors]
    assert conv_id is not None
    seen_ids[conv_id] = line
    if warnings is not None:
        warnings.extend(InputError(n.line, n.field, n.reason, conv_id) for n in notes)
    return ConversationRecord(conv_id, user_id, tuple(messages), metadata, line)


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
        _csv_row(conv, conv_id, line, cell, index, extra)

    result.errors.extend(orphans)
    result.seen += len(orphans)
    for conv_id, conv in conversations.items():
        result.seen += 1
        if len(conv_id) > MAX_ID_CHARS:
            conv.errors.append(
                InputError(conv.line, "conversation_id", f"longer than {MAX_ID_CHARS} characters")
            )
        if not _valid_text(conv_id):
            conv.errors.append(InputError(conv.line, "conversation_id", "contains invalid Unicode"))
        if not conv.errors and not conv.messages:
            conv.errors.append(
                InputError(conv.line, "content", "no message of the conversation has any text")
            )
        if len(conv.messages) > MAX_MESSAGES:
            conv.errors.append(
                InputError(
                    conv.line, "conversation_id", f"has {len(conv.messages)} messages; at most {MAX_MESSAGES}"
                )
            )
        if conv.errors:
            shown_id = conv_id if _valid_text(conv_id) else None
            result.errors.extend(InputError(e.line, e.field, e.reason, shown_id) for e in conv.errors)
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
    conv_id: str,
    line: int,
    cell: Any,
    index: dict[str, int],
    extra: list[tuple[int, str]],
) -> None:
    role = _normalise_role(cell(index["role"]))
    if role is None:
        conv.errors.append(
            InputError(line, "role", f"must be one of {', '.join(ROLES)}, got {cell(index['role'])!r}")
        )
    content = cell(index["content"])
    if not _valid_text(content):
        conv.errors.append(InputError(line, "content", "contains invalid Unicode"))
    elif len(content) > MAX_MESSAGE_CHARS:
        conv.errors.append(
            InputError(line, "content", f"has {len(content)} characters; at most {MAX_MESSAGE_CHARS}")
        )
    elif not content.strip():
        conv.notes.append(InputError(line, "content", "is empty; message left out"))
    elif role is not None:
        conv.messages.append(Message(role, content))
    if "user_id" in index:
        user_id = cell(index["user_id"]).strip()
        if user_id and not _valid_text(user_id):
            conv.errors.append(InputError(line, "user_id", "contains invalid Unicode"))
        elif user_id and len(user_id) > MAX_ID_CHARS:
            conv.errors.append(InputError(line, "user_id", f"longer than {MAX_ID_CHARS} characters"))
        elif user_id and conv.user_id and user_id != conv.user_id:
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
            if _valid_text(value) and _valid_text(key):
                conv.metadata[key] = value
            else:
                conv.errors.append(InputError(line, f"metadata.{key}", "contains invalid Unicode"))


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
# Field checks


def _add(result: InputResult, outcome: ConversationRecord | list[InputError]) -> None:
    if isinstance(outcome, ConversationRecord):
        result.records.append(outcome)
    else:
        result.errors.extend(outcome)


def _check_id(value: Any, name: str, line: int, errors: list[InputError], *, required: bool) -> str | None:
    if value is None:
        if required:
            errors.append(InputError(line, name, "is missing"))
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        errors.append(InputError(line, name, f"must be a string, got {_json_type(value)}"))
        return None
    text = str(value).strip()
    if not text:
        if required:
            errors.append(InputError(line, name, "is empty"))
        return None
    if len(text) > MAX_ID_CHARS:
        errors.append(InputError(line, name, f"longer than {MAX_ID_CHARS} characters ({len(text)})"))
        return None
    if not _valid_text(text):
        errors.append(InputError(line, name, "contains invalid Unicode (a lone surrogate)"))
        return None
    return text


def _check_messages(
    value: Any, line: int, errors: list[InputError], notes: list[InputError]
) -> list[Message]:
    if value is None:
        errors.append(InputError(line, "messages", "is missing"))
        return []
    if not isinstance(value, list):
        errors.append(InputError(line, "messages", f"must be an array, got {_json_type(value)}"))
        return []
    if not value:
        errors.append(InputError(line, "messages", "is empty; a conversation needs at least one message"))
        return []
    if len(value) > MAX_MESSAGES:
        errors.append(InputError(line, "messages", f"has {len(value)} messages; at most {MAX_MESSAGES}"))
        return []
    messages: list[Message] = []
    before = len(errors)
    for i, item in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            errors.append(InputError(line, where, f"must be an object, got {_json_type(item)}"))
            continue
        raw_role = item.get("role")
        role = _normalise_role(raw_role) if isinstance(raw_role, str) else None
        if raw_role is None:
            errors.append(InputError(line, f"{where}.role", "is missing"))
        elif role is None:
            errors.append(
                InputError(line, f"{where}.role", f"must be one of {', '.join(ROLES)}, got {raw_role!r}")
            )
        content = _content_text(item.get("content"), f"{where}.content", line, errors, notes)
        if content is not None and len(content) > MAX_MESSAGE_CHARS:
            errors.append(
                InputError(
                    line, f"{where}.content", f"has {len(content)} characters; at most {MAX_MESSAGE_CHARS}"
                )
            )
        elif content is not None and not content.strip():
            notes.append(InputError(line, f"{where}.content", "is empty; message left out"))
        elif role is not None and content is not None:
            messages.append(Message(role, content))
    if len(errors) == before and not messages:
        errors.append(InputError(line, "messages", "no message has any text"))
    return messages


def _content_text(
    value: Any, where: str, line: int, errors: list[InputError], notes: list[InputError]
) -> str | None:
    """A string, or the text parts of OpenAI's content-parts list joined by newlines; null counts as empty."""
    if value is None:
        return ""
    if isinstance(value, list):
        parts: list[str] = []
        for j, part in enumerate(value):
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") not in (None, "text"):
                kind = part.get("type")
                notes.append(InputError(line, f"{where}[{j}]", f"non-text part ({kind!r}) left out"))
            else:
                errors.append(
                    InputError(line, f"{where}[{j}]", "a content part must be a string or {'text': ...}")
                )
                return None
        value = "\n".join(parts)
    if not isinstance(value, str):
        errors.append(InputError(line, where, f"must be a string, got {_json_type(value)}"))
        return None
    if not _valid_text(value):
        errors.append(InputError(line, where, "contains invalid Unicode (a lone surrogate)"))
        return None
    return value


def _check_metadata(value: Any, line: int, errors: list[InputError]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(InputError(line, "metadata", f"must be an object, got {_json_type(value)}"))
        return {}
    metadata: dict[str, str] = {}
    for key, item in value.items():
        text = item if isinstance(item, str) else "" if item is None else _stringify(item)
        if text is None:
            errors.append(InputError(line, f"metadata.{key}", "value cannot be written as text"))
        elif not _valid_text(key) or not _valid_text(text):
            errors.append(InputError(line, "metadata", "contains invalid Unicode (a lone surrogate)"))
        else:
            metadata[key] = text
    return metadata


def _stringify(value: Any) -> str | None:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (ValueError, RecursionError):
        return None


def _normalise_role(raw: str) -> str | None:
    role = raw.strip().lower()
    role = ROLE_ALIASES.get(role, role)
    return role if role in ROLES else None


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
