"""A page opened in a real browser: Debian's headless ``chromium`` driven over the Chrome DevTools
protocol (one websocket, aiohttp's client), for the HTML report's tests and its README screenshot.

:func:`open_page` loads a URL, collects every console error (``Runtime.consoleAPICalled`` of type
error or assert, ``Runtime.exceptionThrown``, ``Log.entryAdded`` at level error: failed loads and CSP
violations), every JavaScript dialog (``alert`` and the like: a dialog means injected script ran; it is
dismissed so that the page goes on), evaluates expressions in the loaded page and saves a PNG
screenshot. Chromium missing is a test failure, not a skip: ``apt-get install -y chromium``
(``.ci/run`` installs it).

    .venv/bin/python -m tests.support.chromium report.html docs/images/report.png --width 1400 --height 1000 \
        --hover 101
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CHROMIUM_ENV = "BRIEFXAI_CHROMIUM"
# Flags that work in this project's containers (root, no GPU, no display, no network needed).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://\S+)")
START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 60.0


def chromium_path() -> str:
    """The browser to drive; fails the test (with how to install it) when there is none."""
    path = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"chromium not found at {path}: install Debian's package (`apt-get install -y chromium`, as "
            f".ci/run does) or set {CHROMIUM_ENV}",
            pytrace=False,
        )
    return path


def hover_point(index: str) -> str:
    """JavaScript that moves the mouse onto the report map's point number ``index`` (a JavaScript
    expression) and returns the tooltip then shown: ``[hidden, group, cluster, request, elements]``."""
    return (
        "(() => { const c = document.querySelector(`#map circle.point[data-index='${" + index + "}']`);"
        " const r = c.getBoundingClientRect();"
        " c.dispatchEvent(new MouseEvent('mousemove',"
        " {bubbles: true, clientX: r.x + r.width / 2, clientY: r.y + r.height / 2}));"
        " const t = document.getElementById('tooltip');"
        " return [t.hidden, ...['.t-group', '.t-cluster', '.t-request'].map(s => t.querySelector(s).textContent),"
        " t.querySelectorAll('*').length]; })()"
    )


@dataclass
class PageResult:
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    # expression -> its value in the loaded page
    values: dict[str, Any] = field(default_factory=dict)
    screenshot: Path | None = None


class DevToolsSession:
    """One page target over the browser's websocket (flattened sessions): commands and events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.session_id = ""
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.loaded = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def send(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False) -> Any:
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params or {}}
        if self.session_id and not browser:
            message["sessionId"] = self.session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        await self.ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, COMMAND_TIMEOUT)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            if "id" in message:
                future = self._pending.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
                continue
            self.events.append(message)
            method = message.get("method")
            if method == "Page.loadEventFired":
                self.loaded.set()
            elif method == "Page.javascriptDialogOpening":
                # Dismissed at once (not awaited here: this task reads the reply).
                task = asyncio.create_task(self.send("Page.handleJavaScriptDialog", {"accept": False}))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the browser closed the DevTools connection"))

    def errors(self) -> list[str]:
        found: list[str] = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                args = params.get("args", [])
                found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in args))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                description = details.get("exception", {}).get("description") or details.get("text")
                found.append(f"exception: {description}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                found.append(
                    f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip()
                )
        return found

    def dialogs(self) -> list[str]:
        return [
            f"{e['params'].get('type')}: {e['params'].get('message')}"
            for e in self.events
            if e.get("method") == "Page.javascriptDialogOpening"
        ]

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.ws.close()


@contextlib.asynccontextmanager
async def chromium(width: int = 1400, height: int = 1000) -> AsyncIterator[str]:
    """A headless Chromium with remote debugging on a free port; yields its browser websocket URL."""
    path = chromium_path()
    with tempfile.TemporaryDirectory(prefix="briefxai-chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            path,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        lines: list[str] = []
        drain: asyncio.Task[None] | None = None
        try:
            url = await asyncio.wait_for(_devtools_url(process.stderr, lines), START_TIMEOUT)
            drain = asyncio.create_task(_drain(process.stderr))  # a full pipe would stall the browser
            yield url
        except TimeoutError as exc:
            raise RuntimeError("chromium did not start:\n" + "".join(lines[-20:])) from exc
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            if drain is not None:
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain


async def _devtools_url(stream: asyncio.StreamReader, lines: list[str]) -> str:
    while True:
        raw = await stream.readline()
        if not raw:
            raise RuntimeError("chromium exited before DevTools listened:\n" + "".join(lines[-20:]))
        line = raw.decode(errors="replace")
        lines.append(line)
        match = DEVTOOLS_LINE.search(line)
        if match:
            return match.group(1)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def open_page(
    url: str,
    *,
    expressions: Sequence[str] = (),
    screenshot: Path | None = None,
    width: int = 1400,
    height: int = 1000,
    full_page: bool = False,
    headers: dict[str, str] | None = None,
) -> PageResult:
    """Loads ``url`` in headless Chromium (sending ``headers`` with every request); its console errors,
    dialogs, ``expressions``' values and, when ``screenshot`` is given, a PNG of the viewport
    (``full_page``: of the whole page)."""
    async with (
        chromium(width, height) as browser_url,
        aiohttp.ClientSession() as http,
        http.ws_connect(browser_url, max_msg_size=0) as ws,
    ):
        session = DevToolsSession(ws)
        try:
            target = await session.send("Target.createTarget", {"url": "about:blank"}, browser=True)
            attached = await session.send(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, browser=True
            )
            session.session_id = attached["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                await session.send(f"{domain}.enable")
            await session.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            if headers:
                await session.send("Network.enable")
                await session.send("Network.setExtraHTTPHeaders", {"headers": headers})
            navigation = await session.send("Page.navigate", {"url": url})
            if navigation.get("errorText"):
                raise RuntimeError(f"cannot open {url}: {navigation['errorText']}")
            await asyncio.wait_for(session.loaded.wait(), COMMAND_TIMEOUT)
            result = PageResult()
            for expression in expressions:
                reply = await session.send(
                    "Runtime.evaluate", {"expression": expression, "returnByValue": True}
                )
                if "exceptionDetails" in reply:
                    raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
                result.values[expression] = reply["result"].get("value")
            if screenshot is not None:
                params: dict[str, Any] = {"format": "png"}
                if full_page:
                    size = await session.send(
                        "Runtime.evaluate",
                        {
                            "expression": "[document.documentElement.scrollWidth,"
                            " document.documentElement.scrollHeight]",
                            "returnByValue": True,
                        },
                    )
                    page_width, page_height = size["result"]["value"]
                    params.update(
                        captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": page_width, "height": page_height, "scale": 1},
                    )
                shot = await session.send("Page.captureScreenshot", params)
                await asyncio.to_thread(_save, screenshot, base64.b64decode(shot["data"]))
                result.screenshot = screenshot
            result.console_errors = session.errors()
            result.dialogs = session.dialogs()
            return result
        finally:
            with contextlib.suppress(Exception):
                await session.send("Browser.close", browser=True)
            await session.close()


def _save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot an HTML file with headless Chromium.")
    parser.add_argument("page", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--full-page", action="store_true")
    parser.add_argument("--hover", type=int, default=None, help="Show the tooltip of the map's point N.")
    args = parser.parse_args(argv)
    result = asyncio.run(
        open_page(
            args.page.resolve().as_uri(),
            expressions=[hover_point(str(args.hover))] if args.hover is not None else [],
            screenshot=args.png,
            width=args.width,
            height=args.height,
            full_page=args.full_page,
        )
    )
    for line in [*result.console_errors, *result.dialogs]:
        print(line)
    print(f"wrote {args.png}")
    return 1 if result.console_errors or result.dialogs else 0


if __name__ == "__main__":
    raise SystemExit(main())
