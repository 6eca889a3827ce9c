"""A namer that holds a clustering job in its worker thread until a test lets it go."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from briefxai_clustering.model import FloatArray
from briefxai_clustering.naming import ClusterGroup, ClusterLabel, PhraseNamer


class GatedNamer:
    """The phrase namer, but each call waits (in the worker thread) until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.inner = PhraseNamer()

    def name(
        self, texts: Sequence[str], vectors: FloatArray, levels: Sequence[Sequence[ClusterGroup]]
    ) -> dict[str, ClusterLabel]:
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        return self.inner.name(texts, vectors, levels)
