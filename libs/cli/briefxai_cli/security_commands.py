"""``briefxai keys``, ``briefxai audit`` and ``briefxai users``: the gateway's SecurityService (admins only).

Imported by ``main.py`` once its shared options exist (the entry point is ``briefxai_cli.main:main``).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from rich.table import Table

from briefxai.gateway.v1 import security_pb2, security_pb2_grpc
from briefxai_cli.client import CliError, parse_duration
from briefxai_cli.main import EXIT_FAILURE, con, err, gateway_client, gateway_option, handle_errors

ROLES = {
    "viewer": security_pb2.ROLE_VIEWER,
    "analyst": security_pb2.ROLE_ANALYST,
    "admin": security_pb2.ROLE_ADMIN,
}
KEY_COLUMNS = ("id", "tenant", "role", "state", "created", "expires", "last used", "description")
AUDIT_COLUMNS = (
    "sequence",
    "time",
    "actor",
    "tenant_id",
    "peer",
    "rpc",
    "resource",
    "action",
    "outcome",
    "status_code",
    "trace_id",
    "details_json",
    "previous_hash",
    "hash",
)


def _stub(gateway: str) -> tuple[Any, security_pb2_grpc.SecurityServiceStub]:
    client = gateway_client(gateway)
    return client, security_pb2_grpc.SecurityServiceStub(client.channel)


def _time(stamp: Timestamp, present: bool) -> str:
    return stamp.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds") if present else ""


def _key_row(key: security_pb2.ApiKey, now: datetime) -> dict[str, str]:
    state = "active"
    if key.HasField("revoke_time"):
        state = "revoked"
    elif key.HasField("expire_time") and key.expire_time.ToDatetime(tzinfo=UTC) <= now:
        state = "expired"
    return {
        "id": key.id,
        "tenant": key.tenant_id,
        "role": security_pb2.Role.Name(key.role).removeprefix("ROLE_").lower(),
        "state": state,
        "created": _time(key.create_time, key.HasField("create_time")),
        "expires": _time(key.expire_time, key.HasField("expire_time")) or "never",
        "last used": _time(key.last_used_time, key.HasField("last_used_time")) or "never",
        "created by": key.created_by,
        "description": key.description,
    }


def _parse_time(value: str | None, option: str) -> datetime | None:
    """ISO date or date-time (UTC unless it says otherwise), or a duration ago (``7d``, ``12h``)."""
    if not value:
        return None
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(value))
    except (CliError, ValueError):
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"{option}: {value!r} is neither an ISO date/time nor a duration such as 7d") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# -- keys ---------------------------------------------------------------------------------------------


@click.group(name="keys")
def keys_group() -> None:
    """Create, list and revoke API keys (admins only)."""


@keys_group.command(name="create")
@click.option("--tenant", default="", help="Tenant of the key; default: the caller's.")
@click.option("--role", type=click.Choice(sorted(ROLES)), required=True, help="What the key may do.")
@click.option("--expires", default=None, help="Lifetime such as 30d, 12h, 90m; default: never expires.")
@click.option("--description", default="", help="Shown in `briefxai keys list`.")
@gateway_option
@handle_errors
def keys_create(tenant: str, role: str, expires: str | None, description: str, gateway: str) -> None:
    """Create a key; the key is printed once, alone on the last line of stdout."""
    try:
        ttl = round(parse_duration(expires)) if expires else 0
    except ValueError as exc:
        raise CliError(f"--expires: {exc}") from None
    if expires and ttl <= 0:
        raise CliError("--expires must be a positive duration such as 30d")
    client, stub = _stub(gateway)
    with client:
        response = stub.CreateApiKey(
            security_pb2.CreateApiKeyRequest(
                tenant_id=tenant, role=ROLES[role], ttl_seconds=ttl, description=description
            ),
            timeout=client.timeout,
        )
    row = _key_row(response.api_key, datetime.now(UTC))
    err.print(
        f"created key {row['id']} (tenant {row['tenant']}, role {row['role']}, expires {row['expires']}); "
        "store it now, it is not shown again:",
        highlight=False,
    )
    click.echo(response.key)


@keys_group.command(name="list")
@click.option("--all", "include_inactive", is_flag=True, help="Include revoked and expired keys.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@gateway_option
@handle_errors
def keys_list(include_inactive: bool, as_json: bool, gateway: str) -> None:
    """List keys (never the keys themselves): the caller's tenant's, every tenant's for operator admins."""
    client, stub = _stub(gateway)
    with client:
        response = stub.ListApiKeys(
            security_pb2.ListApiKeysRequest(include_inactive=include_inactive), timeout=client.timeout
        )
    now = datetime.now(UTC)
    rows = [_key_row(key, now) for key in response.api_keys]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    view = Table(*KEY_COLUMNS)
    for row in rows:
        view.add_row(*(row[column] for column in KEY_COLUMNS))
    con.print(view)


@keys_group.command(name="revoke")
@click.argument("key_id")
@gateway_option
@handle_errors
def keys_revoke(key_id: str, gateway: str) -> None:
    """Revoke a key at once (its id, as `briefxai keys list` shows it)."""
    client, stub = _stub(gateway)
    with client:
        response = stub.RevokeApiKey(security_pb2.RevokeApiKeyRequest(id=key_id), timeout=client.timeout)
    con.print(f"revoked key {response.api_key.id} (tenant {response.api_key.tenant_id})", highlight=False)


# -- audit --------------------------------------------------------------------------------------------


@click.group(name="audit")
def audit_group() -> None:
    """Check and export the gateway's audit trail (admins only)."""


@audit_group.command(name="verify")
@gateway_option
@handle_errors
def audit_verify(gateway: str) -> None:
    """Check the hash chain end to end; exit 1 naming the first bad record."""
    client, stub = _stub(gateway)
    with client:
        result = stub.VerifyAuditLog(security_pb2.VerifyAuditLogRequest(), timeout=None)
    if result.intact:
        con.print(
            f"audit trail intact: {result.records_checked} records checked, "
            f"{result.records_checkpointed} summarised by retention checkpoints",
            highlight=False,
        )
        return
    err.print(
        f"[red]audit trail broken[/] at record {result.first_bad_sequence}: {result.reason} "
        f"({result.records_checked} records checked)",
        highlight=False,
    )
    sys.exit(EXIT_FAILURE)


@audit_group.command(name="export")
@click.option("--from", "start", default=None, help="Start (ISO date/time, UTC) or a duration ago (7d).")
@click.option(
    "--to", "end", default=None, help="End, exclusive (ISO date/time or duration ago); default now."
)
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File; default stdout."
)
@gateway_option
@handle_errors
def audit_export(start: str | None, end: str | None, fmt: str, out: Path | None, gateway: str) -> None:
    """Write the audit records of a time window as a compliance report (JSON or CSV)."""
    request = security_pb2.ExportAuditLogRequest()
    start_time, end_time = _parse_time(start, "--from"), _parse_time(end, "--to")
    if start_time is not None:
        request.start_time.FromDatetime(start_time)
    if end_time is not None:
        request.end_time.FromDatetime(end_time)
    client, stub = _stub(gateway)
    records: list[dict[str, Any]] = []
    with client:
        for response in stub.ExportAuditLog(request, timeout=None):
            for record in response.records:
                row = json_format.MessageToDict(
                    record, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
                )
                row["sequence"] = int(row["sequence"])
                records.append(row)
    if fmt == "json":
        text = json.dumps(
            {
                "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "from": start_time.isoformat() if start_time else None,
                "to": end_time.isoformat() if end_time else None,
                "records": records,
            },
            indent=2,
        )
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=AUDIT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
        text = buffer.getvalue()
    if out is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        out.write_text(text if text.endswith("\n") else text + "\n")
        err.print(f"wrote {len(records)} audit records to {out}", highlight=False)


# -- users --------------------------------------------------------------------------------------------


@click.group(name="users")
def users_group() -> None:
    """Erase or export one user's data (data subject rights; admins only)."""


@users_group.command(name="erase")
@click.argument("user_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@gateway_option
@handle_errors
def users_erase(user_id: str, yes: bool, gateway: str) -> None:
    """Delete everything stored about USER_ID in the caller's tenant; only the audit record stays."""
    if not yes and sys.stdin.isatty():
        click.confirm(f"erase every conversation and result row of user {user_id!r}?", abort=True)
    client, stub = _stub(gateway)
    with client:
        response = stub.EraseUser(security_pb2.EraseUserRequest(user_id=user_id), timeout=None)
    total = sum(response.deleted_rows.values())
    con.print(f"erased user {user_id}: {total} rows deleted", highlight=False)
    for table, count in sorted(response.deleted_rows.items()):
        con.print(f"  {table}: {count}", highlight=False)
    if response.stale_analysis_ids:
        con.print(
            "results now marked stale (re-run to recompute): " + ", ".join(response.stale_analysis_ids),
            highlight=False,
        )


@users_group.command(name="export")
@click.argument("user_id")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File; default stdout."
)
@gateway_option
@handle_errors
def users_export(user_id: str, out: Path | None, gateway: str) -> None:
    """Write everything stored about USER_ID in the caller's tenant as one JSON document."""
    client, stub = _stub(gateway)
    with client:
        response = stub.ExportUserData(security_pb2.ExportUserDataRequest(user_id=user_id), timeout=None)
    text = json.dumps(json.loads(response.json_document), indent=2, ensure_ascii=False) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        err.print(f"wrote the data of user {user_id} to {out}", highlight=False)
