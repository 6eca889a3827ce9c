"""What the namer may see: no secrets, and no word written by fewer than min_distinct_users people."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import numpy as np
import pytest

from briefxai_clustering.llm_naming import LLMNamer
from briefxai_clustering.model import ClusteringInput, ClusteringParams, FloatArray
from briefxai_clustering.naming import ClusterGroup, ClusterLabel, PhraseNamer
from briefxai_clustering.pipeline import ClusteringPipeline, PipelineConfig, offline_namer
from briefxai_clustering.privacy import MASK, mask_rare_words
from briefxai_clustering.settings import ClusteringSettings, NamerLLMSettings
from tests.clustering.helpers import assert_consistent
from tests.clustering.synthetic import make_data
from tests.support.fake_openai import FakeOpenAI

KEY = "sk-proj-Zq8Xw2Lm5Np7Rt1Vb3Yc6Hd9"


class RecordingNamer:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.inner = PhraseNamer()

    def name(
        self, texts: Sequence[str], vectors: FloatArray, levels: Sequence[Sequence[ClusterGroup]]
    ) -> dict[str, ClusterLabel]:
        self.seen.extend(texts)
        return self.inner.name(texts, vectors, levels)


def test_words_of_too_few_users_are_masked() -> None:
    texts = ["Refund my order, Zyzzyva!", "refund the order", "REFUND order now", "zyzzyva again"]
    codes = np.array([0, 1, 2, 0])  # "zyzzyva" twice, but by one user
    masked = mask_rare_words(texts, codes, 3)
    assert masked == [
        f"Refund {MASK} order, {MASK}!",
        f"refund {MASK} order",
        f"REFUND order {MASK}",
        f"{MASK} {MASK}",
    ]
    assert mask_rare_words(texts, codes, 1) == texts
    assert mask_rare_words(texts, codes, 2)[3] == f"{MASK} {MASK}"  # user 0 alone, whatever the count


def test_merged_small_group_lends_no_word_and_secrets_reach_no_label() -> None:
    data = make_data(240, centers=4, dim=16, seed=5)
    solo = data.labels == 0  # one planted topic, all from one person: merged into a passing cluster
    user_ids = ["solo" if s else u for s, u in zip(solo, data.user_ids, strict=True)]
    texts = [
        f"zyzzyva quockerwodger {t}" if s else f"{t} my key {KEY} AKIAIOSFODNN7EXAMPLE"
        for s, t in zip(solo, data.texts, strict=True)
    ]
    inputs = ClusteringInput(data.vectors, data.ids, user_ids, texts)
    params = ClusteringParams(k=4, seed=3, min_cluster_size=5, min_distinct_users=3, skip_map=True)
    namer = RecordingNamer()
    result = ClusteringPipeline(PipelineConfig(), namer).run(inputs, params)
    assert_consistent(result, inputs, params)
    assert result.withheld_count == 0 and "small clusters merged" in result.k_rule
    seen = " ".join(namer.seen)
    assert "zyzzyva" not in seen and "quockerwodger" not in seen
    assert (
        KEY not in seen and "AKIA" not in seen and "[SECRET]" in seen
    )  # a key shared by many is still a key
    shown = " ".join(f"{c.name} {c.description} {' '.join(c.keywords)}" for c in result.clusters)
    for canary in ("zyzzyva", "quockerwodger", KEY, "AKIAIOSFODNN7EXAMPLE"):
        assert canary not in shown
    assert all(not c.name.startswith("Cluster ") for c in result.clusters)  # common words still name them


def leaky_input() -> ClusteringInput:
    """Every text names a shared contact address and a key; one planted topic is one person's."""
    data = make_data(120, centers=3, dim=16, seed=2)
    solo = data.labels == 0
    user_ids = ["solo" if s else u for s, u in zip(solo, data.user_ids, strict=True)]
    texts = [
        f"{t} zyzzyva mail ops@example.com key {KEY}" if s else f"{t} mail ops@example.com key {KEY}"
        for s, t in zip(solo, data.texts, strict=True)
    ]
    return ClusteringInput(data.vectors, data.ids, user_ids, texts)


@pytest.mark.parametrize("redact_external", [True, False])
async def test_llm_namer_prompts(fake_openai: FakeOpenAI, redact_external: bool) -> None:
    fake_openai.chat_default = lambda request: json.dumps({"name": "Plan a trip", "description": "One. Two."})
    config = PipelineConfig()
    settings = NamerLLMSettings(base_url=fake_openai.base_url, api_key_env="", max_attempts=1)
    namer = LLMNamer(settings, offline_namer(config), redact_external=redact_external)
    await namer.start()
    try:
        params = ClusteringParams(k=3, seed=0, skip_map=True)
        await asyncio.to_thread(ClusteringPipeline(config, namer).run, leaky_input(), params)
    finally:
        await namer.close()
    requests = fake_openai.requests_to("chat")
    assert requests
    prompts = json.dumps([r.body for r in requests])
    assert KEY not in prompts and "zyzzyva" not in prompts
    assert ("ops@example.com" in prompts) is not redact_external
    assert ("[EMAIL]" in prompts) is redact_external


def test_privacy_setting() -> None:
    assert ClusteringSettings.model_validate({}).privacy.redact_external is True
    assert (
        ClusteringSettings.model_validate({"privacy": {"redact_external": False}}).privacy.redact_external
        is False
    )
