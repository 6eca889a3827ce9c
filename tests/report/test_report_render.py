"""The HTML report from hand-made results: escaping of hostile text, withheld conversations never
shown, the Content-Security-Policy, `briefxai report --from`, and the page in headless Chromium.
(The report of a real analysis through the real gateway: tests/gateway/test_report.py.)"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from briefxai_cli.main import cli
from briefxai_report import ReportError, map_data, parse_results, render_report, write_report
from tests.support.chromium import hover_point, open_page

XSS_REQUEST = "<script>alert(1)</script>"
HOSTILE_NAME = "</script><script>alert(2)</script>"
HOSTILE_DESCRIPTION = "<img src=x onerror=alert(3)> & \u2028 line"
SECRET = "withheld secret: my card is 4111 1111 1111 1111"
COUNT_POINTS = "document.querySelectorAll('#map circle.point').length"


def facet(name: str, text: str | None = None, number: float | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "facet": name,
        "provider": "heuristic",
        "reason": "",
        "failed": False,
        "error": "",
    }
    if text is not None:
        value["text"] = text
    if number is not None:
        value["number"] = number
    return value


def cluster(cid: str, level: int, parent: str, children: list[str], name: str, size: int) -> dict[str, Any]:
    return {
        "cluster": {
            "id": cid,
            "level": level,
            "parent_id": parent,
            "child_ids": children,
            "name": name,
            "description": HOSTILE_DESCRIPTION if cid == "L0-0" else f"About {name}.",
            "size": size,
            "distinct_users": size - 1,
            "keywords": ["<b>bold</b>", "plain"],
        },
        "facets": [
            {"facet": "task", "counts": {"coding": size - 1, "<i>evil</i>": 1}},
            {"facet": "language", "counts": {"en": size}},
            {
                "facet": "sentiment",
                "counts": {"negative": 1, "neutral": 0, "positive": size - 1},
                "mean": 0.4,
            },
            {"facet": "concerning", "counts": {"1": size, "2": 0, "3": 0, "4": 0, "5": 0}, "mean": 1.0},
            {"facet": "tokens", "counts": {"32-63": size}, "mean": 40.0},
        ],
    }


def conversation(cid: str, cluster_id: str, request: str, x: float, y: float) -> dict[str, Any]:
    return {
        "conversation_id": cid,
        "facets": [facet("request", text=request), facet("sentiment", number=0.2)],
        "cluster_id": cluster_id,
        "point": {"conversation_id": cid, "x": x, "y": y},
        "withheld": False,
        "revision": 0,
        "unassigned": False,
    }


def results() -> dict[str, Any]:
    """Two top-level clusters over three base clusters, seven reported conversations (one with a
    script as its request), two withheld ones: one with a point and one without, both with text."""
    conversations = [
        conversation("c0", "L0-0", XSS_REQUEST, 0.0, 0.0),
        conversation("c1", "L0-0", "How do I sort a list?", 0.1, 0.2),
        conversation("c2", "L0-0", "Fix my KeyError", 0.2, 0.1),
        conversation("c3", "L0-1", "Banana bread recipe", 3.0, 3.0),
        conversation("c4", "L0-1", "Bake a cake", 3.2, 2.9),
        conversation("c5", "L0-2", "Reset my password", -3.0, 2.0),
        conversation("c6", "L0-2", "Account locked", -2.8, 2.2),
    ]
    withheld = conversation("secret-conv", "", SECRET, 9.0, 9.0)
    withheld["withheld"] = True
    hidden = dict(withheld, conversation_id="secret-conv-2", point=None)
    del hidden["point"]
    return {
        "analysis": {
            "id": "a1",
            "state": "ANALYSIS_STATE_SUCCEEDED",
            "options": {
                "facets": [],
                "seed": "0",
                "embed_text": "EMBED_TEXT_CONVERSATION",
                "display_name": "<u>hostile</u> name",
                "embed_token_budget": 64,
                "min_distinct_users": 2,
            },
            "request_id": "r",
            "conversation_count": "9",
            "create_time": "2026-01-01T10:00:00Z",
            "update_time": "2026-01-01T10:00:05.500Z",
            "stage": "STAGE_STORE",
            "stages": [{"stage": "STAGE_FACETS", "done": "9", "total": "9"}],
            "warnings": ["2 conversation(s) withheld by the privacy thresholds <script>"],
        },
        "clusters": [
            cluster("L1-0", 1, "", ["L0-0", "L0-2"], HOSTILE_NAME, 5),
            cluster("L1-1", 1, "", ["L0-1"], "Cooking", 2),
            cluster("L0-0", 0, "L1-0", [], "Python & <code>", 3),
            cluster("L0-1", 0, "L1-1", [], "Baking", 2),
            cluster("L0-2", 0, "L1-0", [], "Passwords", 2),
        ],
        "conversations": [*conversations, withheld, hidden],
        "total_conversations": "9",
        "withheld_conversations": "2",
        "k": 3,
        "k_rule": "the k option",
        "next_page_token": "",
    }


class Elements(HTMLParser):
    """The start tags of a page and their attribute names, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)


def test_every_text_is_escaped() -> None:
    page = render_report(results())
    elements = Elements()
    elements.feed(page)
    # Only the renderer's own markup: its two scripts (the JSON data block and the map script), no
    # tag or event handler from the data.
    assert elements.tags.count("script") == 2
    assert not {"img", "b", "i", "u"} & set(elements.tags)
    assert "Python &amp; &lt;code&gt;" in page
    assert not [name for name in elements.attributes if name.startswith("on")]
    assert "&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page  # the tree
    assert "&lt;img src=x onerror=alert(3)&gt; &amp;" in page
    assert "<img" not in page and "<b>bold" not in page and "<i>evil" not in page and "<u>hostile" not in page
    assert "&lt;u&gt;hostile&lt;/u&gt; name" in page
    data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert data is not None
    assert "<" not in data.group(1) and "\u2028" not in data.group(1)
    assert XSS_REQUEST in [p[3] for p in json.loads(data.group(1))["points"]]


def test_withheld_conversations_never_appear() -> None:
    page = render_report(results())
    assert "secret" not in page.lower()
    assert "4111" not in page
    report = parse_results(results())
    assert (report.reported_conversations, report.withheld_conversations) == (7, 2)
    assert len(map_data(report)["points"]) == 7


def test_map_groups_follow_the_top_level_clusters() -> None:
    data = map_data(parse_results(results()))
    assert [g["id"] for g in data["groups"]] == ["L1-0", "L1-1"]  # largest first
    assert [g["points"] for g in data["groups"]] == [5, 2]
    groups = {c["id"]: data["groups"][c["group"]]["id"] for c in data["clusters"]}
    assert groups == {"L0-0": "L1-0", "L0-1": "L1-1", "L0-2": "L1-0"}


def test_the_policy_allows_only_the_page_s_own_script_and_style() -> None:
    page = render_report(results())
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert script is not None and style is not None

    def digest(text: str) -> str:
        return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    assert f"script-src '{digest(script.group(1))}'" in policy.group(1)
    assert f"style-src '{digest(style.group(1))}'" in policy.group(1)
    assert "default-src 'none'" in policy.group(1)
    # Nothing to fetch: the one URL is the SVG namespace's name.
    assert not re.findall(r"https?://", page.replace("http://www.w3.org/2000/svg", ""))


def test_run_details() -> None:
    page = render_report(results())
    assert "the k option" in page and "5.5 s" in page
    assert "privacy: fewest distinct users</th><td>2<" in page
    assert "embedded text</th><td>conversation<" in page


def test_not_results_is_a_report_error() -> None:
    bad: list[Any] = [[], {"analysis": 3}, {"analysis": {}, "clusters": {}}, {"analysis": {}, "k": "x"}]
    for value in bad:
        with pytest.raises(ReportError):
            render_report(value)


def test_the_renderer_imports_no_grpc_nor_protobuf() -> None:
    code = (
        "import sys, briefxai_report; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'google', 'briefxai')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cli_report_from_a_saved_file(tmp_path: Path) -> None:
    source = tmp_path / "run" / "analysis.json"
    source.parent.mkdir()
    source.write_text(json.dumps(results()), encoding="utf-8")
    result = CliRunner().invoke(cli, ["report", "--from", str(source), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").read_text(encoding="utf-8") == render_report(results())
    # Without --out: report.html next to the file.
    result = CliRunner().invoke(cli, ["report", "--from", str(source)])
    assert result.exit_code == 0, result.output
    assert (source.parent / "report.html").exists()


def test_cli_report_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report"])
    assert result.exit_code == 2 and "one of them" in result.output
    result = CliRunner().invoke(cli, ["report", "abc", "--from", __file__])
    assert result.exit_code == 2
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    result = CliRunner().invoke(cli, ["report", "--from", str(bad), "--out", str(tmp_path / "x.html")])
    assert result.exit_code == 1 and "not analysis results" in result.output
    bad.write_text("{not json")
    result = CliRunner().invoke(cli, ["report", "--from", str(bad)])
    assert result.exit_code == 1 and "cannot read" in result.output


async def test_the_page_in_chromium(tmp_path: Path) -> None:
    path = write_report(results(), tmp_path / "report.html")
    hover = hover_point("0")
    page = await open_page(
        path.as_uri(),
        expressions=[COUNT_POINTS, hover, "document.querySelectorAll('script').length"],
        screenshot=tmp_path / "report.png",
    )
    assert page.console_errors == []
    assert page.dialogs == []  # no injected script ran
    assert page.values[COUNT_POINTS] == 7
    assert page.values[hover] == [False, HOSTILE_NAME, "Python & <code>", XSS_REQUEST, 3]
    assert page.values["document.querySelectorAll('script').length"] == 2
    assert page.screenshot is not None and page.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
