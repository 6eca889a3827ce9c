"""The ``briefxai`` command: run the suite locally, analyse conversation files, manage analyses, evaluate."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, ParamSpec, TypeVar

import click
import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import briefxai_sampledata
from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli import evaluation, render
from briefxai_cli.client import (
    DEFAULT_GATEWAY,
    EMBED_TEXT,
    GATEWAY_ENV,
    CliError,
    GatewayClient,
    build_options,
    describe_rpc_error,
    error_text,
    parse_duration,
    state_name,
    to_json,
)
from briefxai_cli.config_check import config_group
from briefxai_cli.inputs import ConversationRecord, InputFileError, InputResult, read_conversations
from briefxai_cli.supervisor import (
    ADMIN_KEY_FILE,
    BASE_PORT_ENV,
    WORKERS,
    RestartPolicy,
    ServicePlan,
    Suite,
    SupervisorError,
    describe,
    parse_replicas,
    plan_suite,
    wait_for_any_exit,
)
from briefxai_report import ReportError, write_report

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
MAX_ERRORS_SHOWN = 50
DEFAULT_SAMPLE = Path("examples/sample_conversations.jsonl")
DEFAULT_DATA_DIR = Path("briefxai-data")
DATA_DIR_ENV = "BRIEFXAI_DATA_DIR"
API_KEY_ENV = "BRIEFXAI_API_KEY"
CA_CERT_ENV = "BRIEFXAI_CA_CERT"
TLS_SERVER_NAME_ENV = "BRIEFXAI_TLS_SERVER_NAME"
DEFAULT_RESULTS_DIR = DEFAULT_DATA_DIR / "results"
PIPE_WIDTH = 200


def _console(stderr: bool) -> Console:
    """Wide when writing to a file or pipe (unless COLUMNS says otherwise), so trees are not cut."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, soft_wrap=True, width=PIPE_WIDTH if piped else None)


con = _console(stderr=False)
err = _console(stderr=True)


def fail(message: str, code: int = EXIT_FAILURE) -> None:
    err.print(f"[red]error:[/] {escape(message)}", highlight=False)
    sys.exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turns known failures into one line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except grpc.RpcError as error:
            fail(describe_rpc_error(error))
        except (CliError, InputFileError, SupervisorError) as error:
            fail(str(error))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        raise AssertionError("unreachable")

    return wrapper


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C inside the block, so ``finally`` clauses (stopping services) run."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta[f"briefxai.{param.name}"] = value
    return value


def gateway_option(func: Callable[P, R]) -> Callable[P, R]:
    """``--gateway``, and the credentials :func:`gateway_client` uses: ``--api-key``, ``--ca-cert``."""
    func = click.option(
        "--tls-server-name",
        envvar=TLS_SERVER_NAME_ENV,
        default=None,
        expose_value=False,
        callback=_remember,
        help=f"Name to check in the gateway's certificate instead of the host of --gateway (env "
        f"{TLS_SERVER_NAME_ENV}), e.g. through a port-forward.",
    )(func)
    func = click.option(
        "--ca-cert",
        envvar=CA_CERT_ENV,
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        expose_value=False,
        callback=_remember,
        help=f"CA certificate (PEM) of a gateway that serves TLS (env {CA_CERT_ENV}).",
    )(func)
    func = click.option(
        "--api-key",
        envvar=API_KEY_ENV,
        default=None,
        expose_value=False,
        callback=_remember,
        help=f"API key (env {API_KEY_ENV}; default for a gateway on this machine: <data dir>/{ADMIN_KEY_FILE} "
        f"when it exists, the data dir being ${DATA_DIR_ENV} or ./{DEFAULT_DATA_DIR}).",
    )(func)
    return click.option(
        "--gateway",
        envvar=GATEWAY_ENV,
        default=DEFAULT_GATEWAY,
        show_default=True,
        help=f"Gateway address host:port (env {GATEWAY_ENV}).",
    )(func)


def local_api_key() -> str | None:
    """The admin key ``briefxai up`` wrote in its data dir ($BRIEFXAI_DATA_DIR, else ./briefxai-data)."""
    path = Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR) / ADMIN_KEY_FILE
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CliError(f"cannot read the API key in {path}: {exc}") from exc


def is_local_address(address: str) -> bool:
    """Whether ``address`` (host:port) names this machine: only such a gateway gets the local admin key."""
    host = address.rpartition(":")[0].strip("[]") if ":" in address else address
    host = host.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def gateway_client(address: str) -> GatewayClient:
    """A client of the gateway at ``address`` with the command's credentials: ``--api-key`` (or
    $BRIEFXAI_API_KEY, or the local admin key), ``--ca-cert`` (or $BRIEFXAI_CA_CERT) for TLS, with
    ``--tls-server-name``."""
    context = click.get_current_context(silent=True)
    meta = context.meta if context is not None else {}
    return GatewayClient(
        address,
        api_key=meta.get("briefxai.api_key") or (local_api_key() if is_local_address(address) else None),
        ca_file=meta.get("briefxai.ca_cert"),
        server_name=meta.get("briefxai.tls_server_name"),
    )


input_format_option = click.option(
    "--format",
    "input_format",
    type=click.Choice(["jsonl", "json", "csv"]),
    default=None,
    help="Input format; default: from the extension or content.",
)


def analysis_options(func: Callable[P, R]) -> Callable[P, R]:
    decorators = [
        click.option(
            "--k", type=click.IntRange(min=2), default=None, help="Base clusters; default: automatic."
        ),
        click.option(
            "--depth",
            type=click.IntRange(min=0),
            default=None,
            help="Levels above the base (0: base clusters only); default: the clustering service's.",
        ),
        click.option(
            "--min-cluster-size",
            type=click.IntRange(min=1),
            default=None,
            help="Privacy: smallest cluster reported; default: the clustering service's (5).",
        ),
        click.option(
            "--min-users",
            type=click.IntRange(min=1),
            default=None,
            help="Privacy: fewest distinct users per reported cluster; default: the clustering service's (3).",
        ),
        click.option(
            "--seed",
            type=click.IntRange(0, 2**64 - 1),
            default=None,
            help="Random seed; default: the gateway's (0).",
        ),
        click.option(
            "--embed-text",
            type=click.Choice(sorted(EMBED_TEXT)),
            default=None,
            help="Text embedded per conversation: whole conversation (default), user turns, first user "
            "message, or the extracted request summary.",
        ),
        click.option(
            "--embed-tokens",
            type=click.IntRange(1, 8192),
            default=None,
            help="Model tokens that represent a conversation (the cost of embedding it); default: the "
            "gateway's (64).",
        ),
        click.option("--facets", default="", help="Comma-separated facet names; default: all."),
        click.option("--name", "display_name", default="", help="Display name shown in listings."),
        input_format_option,
        click.option("--stream", is_flag=True, help="Always upload with client streaming (UploadAnalysis)."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def options_from(params: dict[str, Any]) -> gateway_pb2.AnalysisOptions:
    facets = [f.strip() for f in str(params.get("facets") or "").split(",") if f.strip()]
    return build_options(
        k=params["k"],
        depth=params["depth"],
        min_cluster_size=params["min_cluster_size"],
        min_users=params["min_users"],
        seed=params["seed"],
        embed_text=params["embed_text"],
        embed_tokens=params.get("embed_tokens"),
        facets=facets,
        display_name=params.get("display_name") or "",
    )


# --------------------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="briefxai-cli", prog_name="briefxai")
def cli() -> None:
    """BriefXAI: a privacy-safe map of what people talk about in conversation logs."""


# -- up / demo --------------------------------------------------------------------------------------


def _replicas(ctx: click.Context, param: click.Parameter, value: str) -> dict[str, int]:
    try:
        return parse_replicas(value)
    except SupervisorError as error:
        raise click.BadParameter(str(error)) from error


replicas_option = click.option(
    "--replicas",
    default="",
    metavar="SERVICE=N,...",
    callback=_replicas,
    help=f"Run N local replicas of a worker service ({', '.join(WORKERS)}), e.g. embedding=2,facets=2. "
    "Each has its own gRPC and HTTP (/metrics) ports, after the four services' ones; the gateway "
    "round-robins over the replicas that are SERVING. The gateway itself runs once (its store is SQLite).",
)


@cli.command()
@click.option(
    "--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="YAML config file."
)
@click.option(
    "--base-port",
    type=click.IntRange(min=0, max=65500),
    envvar=BASE_PORT_ENV,
    default=None,
    help=f"gRPC ports N..N+3 (gateway, embedding, facets, clustering), HTTP N+10..N+13; 0 = any free ports. "
    f"Default: from the config file, else 50051-50054 and 9091-9094. Env {BASE_PORT_ENV}.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=DATA_DIR_ENV,
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help=f"SQLite store, service logs, the local admin key (env {DATA_DIR_ENV}).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the services bind to.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for SERVING.")
@replicas_option
@click.option(
    "--no-restart",
    is_flag=True,
    help="Stop every service when one dies. Default: restart it (after 1 s, doubling to 30 s while it "
    "keeps dying within a minute of starting; after 5 such deaths in a row, stop them all).",
)
@handle_errors
def up(
    config: Path | None,
    base_port: int | None,
    data_dir: Path,
    host: str,
    timeout: float,
    replicas: dict[str, int],
    no_restart: bool,
) -> None:
    """Start the four services locally and keep them running until Ctrl-C; restart any that dies."""
    plan = plan_suite(data_dir, host=host, base_port=base_port, config=config, replicas=replicas)
    suite = Suite(plan)
    with sigterm_as_interrupt():
        try:
            err.print(f"starting services (logs in {suite.log_dir}) ...")
            suite.start(timeout=timeout, on_ready=_print_ready)
            con.print(_addresses_table(plan.services))
            if plan.gateway_address != DEFAULT_GATEWAY:
                con.print(f"use it with: export {GATEWAY_ENV}={plan.gateway_address}")
            if plan.data_dir != DEFAULT_DATA_DIR.resolve():
                con.print(f"the CLI finds its API key with: export {DATA_DIR_ENV}={plan.data_dir}")
            con.print(f"store: {plan.store_url}")
            con.print("press Ctrl-C to stop")
            if no_restart:
                exited = wait_for_any_exit(suite)
                details = "; ".join(f"{name} exited with code {code}" for name, code in exited.items())
                tails = "\n".join(f"--- {name}:\n{suite.log_tail(name)}" for name in exited)
                raise SupervisorError(f"{details}; stopping the others\n{tails}")
            suite.supervise(RestartPolicy(ready_timeout=timeout), on_event=_print_event)
        except KeyboardInterrupt:
            err.print("stopping services ...")
        finally:
            codes = suite.stop()
            if codes:
                err.print("stopped: " + ", ".join(f"{name} ({code})" for name, code in codes.items()))


def _print_ready(plan: ServicePlan, elapsed: float) -> None:
    err.print(f"  {plan.instance:<12} SERVING on {plan.address} ({elapsed:.1f}s)")


def _print_event(message: str) -> None:
    err.print(f"[yellow]supervisor:[/] {escape(message)}", highlight=False)


def _addresses_table(services: Sequence[ServicePlan]) -> Table:
    table = Table(title="BriefXAI services")
    table.add_column("service")
    table.add_column("gRPC")
    table.add_column("HTTP (/health, /metrics)")
    for row in describe(services):
        table.add_row(*row)
    return table


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Default: a fresh ./briefxai-data/demo-<time>.",
)
@click.option(
    "--sample",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_SAMPLE,
    show_default=True,
    help="Conversations to analyse (generated if the file is missing).",
)
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for SERVING.")
@replicas_option
@handle_errors
def demo(data_dir: Path | None, sample: Path, timeout: float, replicas: dict[str, int]) -> None:
    """Start the suite, analyse the bundled sample, print the cluster tree, stop the suite."""
    data_dir = data_dir or DEFAULT_DATA_DIR / datetime.now().strftime("demo-%Y%m%d-%H%M%S")
    if not sample.exists():
        generated = data_dir / "sample_conversations.jsonl"
        count = briefxai_sampledata.write(generated, 400, 7)
        err.print(f"{sample} not found; generated {count} sample conversations in {generated}")
        sample = generated
    plan = plan_suite(data_dir, base_port=0, replicas=replicas)
    suite = Suite(plan)
    with sigterm_as_interrupt():
        try:
            err.print(f"starting services (data and logs in {plan.data_dir}) ...")
            suite.start(timeout=timeout, on_ready=_print_ready)
            suite.supervise_in_background(RestartPolicy(ready_timeout=timeout), on_event=_print_event)
            with GatewayClient(plan.gateway_address, api_key=suite.admin_key) as client:
                analyze_file(
                    client,
                    sample,
                    gateway_pb2.AnalysisOptions(display_name="demo"),
                    out_dir=plan.data_dir / "results",
                    stream=None,
                )
        finally:
            err.print("stopping services ...")
            codes = suite.stop()
            if codes:
                err.print("stopped: " + ", ".join(f"{name} ({code})" for name, code in codes.items()))
            if suite.failure:
                err.print(f"[red]supervisor:[/] {escape(suite.failure)}", highlight=False)
    unclean = {name: code for name, code in codes.items() if code != 0}
    if unclean:
        raise CliError(f"services did not stop cleanly (exit codes {unclean}); logs in {suite.log_dir}")


# -- analyze ----------------------------------------------------------------------------------------


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Directory for analysis.json; default {DEFAULT_RESULTS_DIR}/<analysis id>.",
)
@analysis_options
@click.option("--strict", is_flag=True, help="Send nothing when any record is invalid.")
@gateway_option
@handle_errors
def analyze(file: Path, out: Path | None, gateway: str, strict: bool, **params: Any) -> None:
    """Analyse a JSONL, JSON-array or CSV file of conversations."""
    with gateway_client(gateway) as client:
        analyze_file(
            client,
            file,
            options_from(params),
            out_dir=out,
            stream=True if params["stream"] else None,
            input_format=params["input_format"],
            strict=strict,
        )


def read_input(file: Path, input_format: str | None = None, strict: bool = False) -> InputResult:
    result = read_conversations(file, input_format)  # type: ignore[arg-type]
    for line in render.input_error_lines(result.errors, MAX_ERRORS_SHOWN):
        err.print(line, markup=False, highlight=False)
    for line in render.input_error_lines(result.warnings, MAX_ERRORS_SHOWN, "input warning"):
        err.print(line, markup=False, highlight=False)
    err.print(
        f"read {result.seen} records from {file} ({result.format}): {len(result.records)} accepted, "
        f"{result.rejected} rejected",
        highlight=False,
    )
    if not result.records:
        raise CliError(f"no valid conversations in {file}")
    if strict and result.errors:
        raise CliError(f"{result.rejected} invalid records and --strict is set; nothing was sent")
    return result


def analyze_file(
    client: GatewayClient,
    file: Path,
    options: gateway_pb2.AnalysisOptions,
    *,
    out_dir: Path | None,
    stream: bool | None,
    input_format: str | None = None,
    strict: bool = False,
) -> gateway_pb2.GetAnalysisResultsResponse:
    result = read_input(file, input_format, strict)
    analysis, results = run_analysis(client, result.records, options, stream=stream)
    target = out_dir or DEFAULT_RESULTS_DIR / analysis.id
    path = write_results(target, results)
    if result.errors:
        errors_path = target / "input_errors.json"
        errors_path.write_text(
            json.dumps([asdict(e) for e in result.errors], indent=2, ensure_ascii=False) + "\n"
        )
        err.print(f"input errors written to {errors_path}")
    con.print(render.cluster_tree(results))
    con.print(f"analysis {analysis.id} SUCCEEDED; results: {path}", highlight=False)
    return results


def run_analysis(
    client: GatewayClient,
    records: Sequence[ConversationRecord],
    options: gateway_pb2.AnalysisOptions,
    *,
    stream: bool | None,
    title: str = "",
) -> tuple[gateway_pb2.Analysis, gateway_pb2.GetAnalysisResultsResponse]:
    """Creates the analysis, follows it with a progress bar, returns it and all its results."""
    try:
        analysis = client.create(records, options, stream=stream)
    except grpc.RpcError as error:
        raise CliError(describe_rpc_error(error, records)) from error
    err.print(
        f"{title}analysis {analysis.id} created: {analysis.conversation_count} conversations, "
        f"state {state_name(analysis.state)}",
        highlight=False,
    )
    if analysis.conversation_count != len(records):
        err.print(
            f"[yellow]warning:[/] sent {len(records)} conversations, the gateway reports "
            f"{analysis.conversation_count}"
        )
    try:
        with render.ProgressView(err) as view:
            final = client.wait(analysis.id, _shown_notes(view), on_reconnect=_print_reconnect)
    except KeyboardInterrupt:
        err.print(
            f"stopped following analysis {analysis.id}; it keeps running on the gateway. "
            f"Check it with `briefxai status {analysis.id}`, stop it with `briefxai cancel {analysis.id}`."
        )
        raise
    for warning in final.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if final.state != gateway_pb2.ANALYSIS_STATE_SUCCEEDED:
        reason = f": {error_text(final.error)}" if final.HasField("error") else ""
        raise CliError(f"analysis {final.id} {state_name(final.state)}{reason}")
    return final, client.results(final.id)


def _shown_notes(
    view: render.ProgressView,
) -> Callable[[gateway_pb2.WatchAnalysisResponse], None]:
    """``view.update``, printing each new ``waiting for ...`` note of the gateway once (it waits for a
    service that is down)."""
    seen: set[str] = set()

    def update(progress: gateway_pb2.WatchAnalysisResponse) -> None:
        view.update(progress)
        for note in progress.analysis.warnings:
            if note.startswith("waiting for") and note not in seen:
                seen.add(note)
                err.print(f"[yellow]{escape(note)}[/]", highlight=False)

    return update


def _print_reconnect(message: str) -> None:
    err.print(f"[yellow]{escape(message)}[/]", highlight=False)


def write_results(directory: Path, results: gateway_pb2.GetAnalysisResultsResponse) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "analysis.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_json(results), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# -- assign -----------------------------------------------------------------------------------------


@cli.command()
@click.argument("analysis_id", metavar="ID")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@input_format_option
@click.option("--strict", is_flag=True, help="Send nothing when any record is invalid.")
@click.option(
    "--request-id",
    default=None,
    help="Idempotency key: the same key again returns the first answer and adds no revision "
    "(default: a new key).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the AssignConversationsResponse as JSON.")
@gateway_option
@handle_errors
def assign(
    analysis_id: str,
    file: Path,
    input_format: str | None,
    strict: bool,
    request_id: str | None,
    as_json: bool,
    gateway: str,
) -> None:
    """Assign the conversations of FILE to the clusters of finished analysis ID: a new revision of its
    results (the tree stays as it is; earlier revisions stay readable)."""
    result = read_input(file, input_format, strict)
    with gateway_client(gateway) as client:
        try:
            response = client.assign(analysis_id, result.records, request_id=request_id)
        except grpc.RpcError as error:
            raise CliError(describe_rpc_error(error, result.records)) from error
        if as_json:
            click.echo(json.dumps(to_json(response), indent=2, ensure_ascii=False))
            return
        page = client.clusters(analysis_id, response.revision)
    con.print(render.assignment_summary(response, page))


# -- managing analyses ------------------------------------------------------------------------------


@cli.command()
@click.argument("analysis_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the Analysis as JSON.")
@gateway_option
@handle_errors
def status(analysis_id: str, as_json: bool, gateway: str) -> None:
    """Show the state and progress of one analysis."""
    with gateway_client(gateway) as client:
        analysis = client.get(analysis_id)
    if as_json:
        con.print_json(data=to_json(analysis))
    else:
        con.print(render.analysis_summary(analysis))


@cli.command()
@click.argument("analysis_id", metavar="ID")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Directory for analysis.json; default {DEFAULT_RESULTS_DIR}/<ID>.",
)
@click.option(
    "--revision",
    type=click.IntRange(min=0),
    default=None,
    help="Revision of the results (0: the analysis's own; `assign` adds one each); default: the newest.",
)
@gateway_option
@handle_errors
def results(analysis_id: str, out: Path | None, revision: int | None, gateway: str) -> None:
    """Fetch all results of a finished analysis into analysis.json and print the cluster tree."""
    with gateway_client(gateway) as client:
        response = client.results(analysis_id, revision=revision)
    path = write_results(out or DEFAULT_RESULTS_DIR / response.analysis.id, response)
    con.print(render.cluster_tree(response))
    con.print(f"results: {path}", highlight=False)


@cli.command()
@click.argument("analysis_id", metavar="[ID]", required=False)
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Render an analysis.json saved by `analyze` or `results` instead of fetching ID (offline).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"HTML file to write; default {DEFAULT_RESULTS_DIR}/<ID>/report.html, or report.html next to "
    "the --from file.",
)
@gateway_option
@handle_errors
def report(analysis_id: str | None, source: Path | None, out: Path | None, gateway: str) -> None:
    """Write one self-contained HTML report of a finished analysis: the map, the cluster tree with
    facet charts, the options, timings and what the privacy rule withheld."""
    if (analysis_id is None) == (source is None):
        raise click.UsageError("give an analysis ID or --from FILE (one of them)")
    if source is not None:
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CliError(f"cannot read {source}: {error}") from error
        target = out or source.with_name("report.html")
    else:
        with gateway_client(gateway) as client:
            response = client.results(str(analysis_id))
        data = to_json(response)
        target = out or DEFAULT_RESULTS_DIR / response.analysis.id / "report.html"
    try:
        path = write_report(data, target)
    except ReportError as error:
        raise CliError(f"{source or analysis_id}: {error}") from error
    except OSError as error:
        raise CliError(f"cannot write {target}: {error}") from error
    con.print(f"report: {path}", highlight=False)


@cli.command(name="list")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one Analysis per line.")
@gateway_option
@handle_errors
def list_analyses(limit: int | None, as_json: bool, gateway: str) -> None:
    """List analyses, newest first."""
    with gateway_client(gateway) as client:
        analyses = list(client.list(limit=limit))
    if as_json:
        for analysis in analyses:
            click.echo(json.dumps(to_json(analysis), ensure_ascii=False))
    else:
        con.print(render.analyses_table(analyses))


@cli.command()
@click.argument("analysis_id", metavar="ID")
@gateway_option
@handle_errors
def cancel(analysis_id: str, gateway: str) -> None:
    """Cancel a pending or running analysis."""
    with gateway_client(gateway) as client:
        analysis = client.cancel(analysis_id)
    con.print(f"analysis {analysis.id}: {state_name(analysis.state)}", highlight=False)


@cli.command()
@click.argument("analysis_id", metavar="ID")
@gateway_option
@handle_errors
def delete(analysis_id: str, gateway: str) -> None:
    """Delete an analysis and everything stored for it."""
    with gateway_client(gateway) as client:
        client.delete(analysis_id)
    con.print(f"deleted analysis {analysis_id}", highlight=False)


def _window_seconds(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error
    if seconds < 0:
        raise click.BadParameter("must not be negative")
    return seconds


@cli.command()
@click.option(
    "--since",
    "window",
    default="24h",
    show_default=True,
    callback=_window_seconds,
    help="How far back to look: 90m, 24h, 7d (cut to the gateway's performance.retention_hours).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@gateway_option
@handle_errors
def perf(window: float, as_json: bool, gateway: str) -> None:
    """Show throughput per stage, RPC latencies, memory trend, the bottleneck and recommendations."""
    with gateway_client(gateway) as client:
        report = client.performance_report(window)
    if as_json:
        click.echo(json.dumps(to_json(report), indent=2, ensure_ascii=False))
    else:
        con.print(render.performance_report(report))


# -- eval -------------------------------------------------------------------------------------------


@cli.command(name="eval")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--label-key", default="metadata.label", show_default=True, help="Dotted path of the label.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Directory for eval.json and both runs' results; default {DEFAULT_RESULTS_DIR}/eval-<first id>.",
)
@click.option("--skip-determinism", is_flag=True, help="Run once; do not check a second same-seed run.")
@analysis_options
@gateway_option
@handle_errors
def eval_command(
    file: Path, label_key: str, out: Path | None, skip_determinism: bool, gateway: str, **params: Any
) -> None:
    """Analyse a labelled file and score the clusters against the labels (AMI, ARI per level)."""
    result = read_input(file, params["input_format"])
    labels = {
        record.id: label
        for record in result.records
        if (label := evaluation.lookup(record.to_dict(), label_key)) is not None
    }
    if not labels:
        raise CliError(f"no conversation in {file} has a value at {label_key}")
    options = options_from(params)
    stream = True if params["stream"] else None
    with gateway_client(gateway) as client:
        first, first_results = run_analysis(client, result.records, options, stream=stream, title="run 1: ")
        runs = [first_results]
        if not skip_determinism:
            _, second_results = run_analysis(client, result.records, options, stream=stream, title="run 2: ")
            runs.append(second_results)
    parsed = [evaluation.from_results(to_json(run)) for run in runs]
    report = evaluation.evaluate(parsed[0][0], parsed[0][1], labels)
    comparison = evaluation.compare_runs(parsed[0], parsed[1]) if len(parsed) > 1 else None

    target = out or DEFAULT_RESULTS_DIR / f"eval-{first.id}"
    for index, run in enumerate(runs, start=1):
        write_results(target / f"run{index}", run)
    summary = {
        "file": str(file),
        "label_key": label_key,
        "analyses": [run.analysis.id for run in runs],
        "total": report.total,
        "withheld": report.withheld,
        "unlabelled": report.unlabelled,
        "levels": [asdict(score) for score in report.levels],
        "determinism": None
        if comparison is None
        else {
            "identical": comparison.identical,
            "same_withheld": comparison.same_withheld,
            "ari_by_level": {str(k): v for k, v in comparison.ari_by_level.items()},
        },
    }
    target.mkdir(parents=True, exist_ok=True)
    (target / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    con.print(render.evaluation_table(report, comparison, label_key))
    con.print(f"evaluation: {target / 'eval.json'}", highlight=False)
    if comparison is not None and not comparison.identical:
        sys.exit(EXIT_FAILURE)


# -- sample -----------------------------------------------------------------------------------------


@cli.command()
@click.option("--n", "count", type=click.IntRange(min=0), default=400, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--out", "target", default="-", show_default=True, help="Output file, '-' for stdout.")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "json", "csv"]), default="jsonl", show_default=True
)
@handle_errors
def sample(count: int, seed: int, target: str, fmt: str) -> None:
    """Write labelled synthetic conversations (metadata.label holds the topic)."""
    written = briefxai_sampledata.write(target, count, seed, fmt)
    if target != "-":
        err.print(f"wrote {written} conversations to {target}")


cli.add_command(config_group)
# Imported here, after the options they share: the security commands import them from this module.
from briefxai_cli.security_commands import audit_group, keys_group, users_group  # noqa: E402

for group in (keys_group, audit_group, users_group):
    cli.add_command(group)


def main() -> None:
    cli(prog_name="briefxai")


if __name__ == "__main__":
    main()
