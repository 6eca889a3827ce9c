"""Canaries: unique strings planted in conversations whose groups fall below the privacy thresholds, and
secrets planted in conversations above them, through a real suite of four processes.

The suite runs with ``clustering.merge_small_clusters: false``, so a group under the thresholds is
withheld (with merging on its conversations join a passing cluster as reported members; the clustering
tests show that their words still reach no name, keyword or description). None of the canaries may reach
a cluster name, description or keyword, the HTML report (the gateway's HTTP route and ``briefxai
report``), any log line of any service, the exported results (``briefxai analyze``'s analysis.json,
``briefxai results``). The secrets may appear nowhere at all: not in the results of the conversations
that are reported either, nor in the store (``gateway.privacy.redact_stored_text: secrets``, the default).
"""

from __future__ import annotations

import json
import random
import string
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from briefxai_cli.inputs import read_conversations
from briefxai_cli.supervisor import Suite, plan_suite
from tests.e2e.support import SAMPLE, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
START_TIMEOUT = 600.0
SEED = 7
MERGE_OFF = {"BRIEFXAI_CLUSTERING_MERGE_SMALL_CLUSTERS": "false"}


# The canaries are drawn from a fixed seed: unique in the data set all the same, and the same in every run,
# so that the clustering (which the planted words shape) groups the small groups the same way each time.
RNG = random.Random(20261203)


def _letters(count: int) -> str:
    return "".join(RNG.choices(string.ascii_lowercase, k=count))


def _hex() -> str:
    return f"{RNG.getrandbits(128):032x}"


@dataclass(frozen=True)
class Canaries:
    """What is planted: words in the small groups, and secrets in small and large groups alike."""

    solo_word: str  # canary-<hex>: 4 conversations of one user
    solo_letters: str  # a letters-only word of the same conversations (the namer's tokenizer keeps it)
    pair_word: str  # 4 conversations of two users
    small_key: str  # an OpenAI-style key in the one-user group
    small_aws: str  # an AWS access key id in the one-user group
    large_key: str  # an OpenAI-style key spread over conversations of many users
    large_aws: str

    @property
    def words(self) -> tuple[str, ...]:
        return (self.solo_word, self.solo_letters, self.pair_word)

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.small_key, self.small_aws, self.large_key, self.large_aws)

    @property
    def everything(self) -> tuple[str, ...]:
        return (*self.words, *self.secrets)


def new_canaries() -> Canaries:
    def aws() -> str:
        return "AKIA" + "".join(RNG.choices(string.ascii_uppercase + string.digits, k=15)) + "7"

    return Canaries(
        solo_word=f"canary-{_hex()}",
        solo_letters=f"canary{_letters(12)}",
        pair_word=f"canary-{_hex()}",
        small_key=f"sk-proj-{_hex()}{_hex()[:8]}",
        small_aws=aws(),
        large_key=f"sk-{_hex()}7",
        large_aws=aws(),
    )


def chat(cid: str, user: str, question: str, answer: str) -> dict[str, Any]:
    return {
        "id": cid,
        "user_id": user,
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
    }


def planted_records(canaries: Canaries) -> list[dict[str, Any]]:
    """The bundled sample, secrets added to 12 conversations of distinct users, and two small groups."""
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    seen_users: set[str] = set()
    for row in rows:
        if len(seen_users) == 12:
            break
        if row["user_id"] in seen_users:
            continue
        seen_users.add(row["user_id"])
        row["messages"][0]["content"] += (
            f" My API key is {canaries.large_key} and the AWS key {canaries.large_aws}, if that helps."
        )
    c = canaries
    for i in range(4):
        rows.append(
            chat(
                f"canary-solo-{i}",
                "canary-solo-user",
                f"Calibrate the {c.solo_letters} beehive hygrometer {c.solo_word} on the greenhouse "
                f"controller; my key {c.small_key} and {c.small_aws} are in the config.",
                f"To calibrate the {c.solo_letters} hygrometer {c.solo_word}, reset the greenhouse controller.",
            )
        )
        rows.append(
            chat(
                f"canary-pair-{i}",
                f"canary-pair-user-{i % 2}",
                f"Translate the medieval falconry manual {c.pair_word} into Old Norse runes, chapter {i}.",
                f"Here is the falconry manual {c.pair_word} in runes.",
            )
        )
    return rows


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """This module's suite: the conftest's, with small groups withheld rather than merged."""
    running = Suite(plan_suite(tmp_path_factory.mktemp("briefxai-canary"), base_port=0), extra_env=MERGE_OFF)
    running.start(timeout=START_TIMEOUT)
    yield running
    codes = running.stop()
    assert codes == {name: 0 for name in codes}, f"services did not stop cleanly: {codes}"


@dataclass(frozen=True)
class Run:
    canaries: Canaries
    results: dict[str, Any]  # analysis.json as `briefxai analyze` saved it
    exports: dict[str, str]  # what left the suite, by where it was read


@pytest.fixture(scope="module")
def run(suite: Suite, tmp_path_factory: pytest.TempPathFactory) -> Run:
    canaries = new_canaries()
    folder = tmp_path_factory.mktemp("canary-run")
    source = folder / "planted.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in planted_records(canaries)), encoding="utf-8")
    assert not read_conversations(source).errors
    data_dir = suite.plan.data_dir

    def cli(*args: str) -> str:
        completed = run_cli(*args, "--gateway", suite.gateway_address, data_dir=data_dir)
        assert completed.returncode == 0, completed.stderr
        return completed.stdout + completed.stderr

    exports = {
        "analyze output": cli("analyze", str(source), "--out", str(folder / "analyze"), "--seed", str(SEED))
    }
    analysis_json = (folder / "analyze" / "analysis.json").read_text(encoding="utf-8")
    results = json.loads(analysis_json)
    analysis_id = results["analysis"]["id"]
    exports["analyze analysis.json"] = analysis_json
    exports["results output"] = cli("results", analysis_id, "--out", str(folder / "results"))
    exports["results analysis.json"] = (folder / "results" / "analysis.json").read_text(encoding="utf-8")
    exports["report output"] = cli("report", analysis_id, "--out", str(folder / "report.html"))
    exports["report"] = (folder / "report.html").read_text(encoding="utf-8")
    offline = run_cli(
        "report", "--from", str(folder / "analyze" / "analysis.json"), "--out", str(folder / "o.html")
    )
    assert offline.returncode == 0, offline.stderr
    exports["offline report"] = (folder / "o.html").read_text(encoding="utf-8")
    gateway = suite.plan.service("gateway")
    request = urllib.request.Request(
        f"http://127.0.0.1:{gateway.http_port}/analyses/{analysis_id}/report",
        headers={"Authorization": f"Bearer {suite.admin_key}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
        exports["http report"] = response.read().decode("utf-8")
    return Run(canaries, results, exports)


def conversation_rows(results: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [row for row in results["conversations"] if row["conversation_id"].startswith(prefix)]


def test_the_small_groups_were_withheld(run: Run) -> None:
    """The premise: the planted groups fall below the thresholds (5 conversations, 3 distinct users)."""
    for prefix in ("canary-solo-", "canary-pair-"):
        rows = conversation_rows(run.results, prefix)
        assert len(rows) == 4
        assert all(row["withheld"] and not row["cluster_id"] for row in rows), rows
    assert int(run.results["withheld_conversations"]) >= 8
    assert len(run.results["conversations"]) == 408


def test_no_canary_reaches_a_cluster_or_an_export(run: Run) -> None:
    labels = json.dumps(
        [
            (item["cluster"]["name"], item["cluster"]["description"], item["cluster"]["keywords"])
            for item in run.results["clusters"]
        ]
    )
    assert run.results["clusters"]
    for canary in run.canaries.everything:
        assert canary not in labels
        for where, text in run.exports.items():
            assert canary not in text, f"{canary!r} in the {where}"
    for row in conversation_rows(run.results, "canary-"):
        assert "request" not in {value["facet"] for value in row["facets"]}


def test_no_canary_reaches_a_log_line(suite: Suite, run: Run) -> None:
    logs = sorted(suite.log_dir.glob("*.log*"))
    assert {path.name.split(".")[0] for path in logs} >= {"gateway", "facets", "embedding", "clustering"}
    for path in logs:
        text = path.read_text(encoding="utf-8", errors="replace")
        for canary in run.canaries.everything:
            assert canary not in text, f"{canary!r} in {path.name}"


def test_no_secret_is_stored(suite: Suite, run: Run) -> None:
    store = suite.plan.store_path
    assert store is not None and store.exists()
    files = [store, *store.parent.glob(store.name + "-*")]
    content = b"".join(path.read_bytes() for path in files)
    for secret in run.canaries.secrets:
        assert secret.encode() not in content
    assert b"[SECRET]" in content
    assert run.canaries.solo_word.encode() in content  # the words themselves are stored, only never shown
