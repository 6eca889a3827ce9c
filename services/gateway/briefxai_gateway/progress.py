"""Stage progress of analyses: the stage an analysis is in, derived from its durable progress, and
live progress of the analyses running in this process: rates, ETA, wake-ups for watchers, and
the wall time of each stage of a run, handed to the listeners of a finished run (the performance
history, ``sampler.py``).

Durable progress lives in the store (checkpoints); the live part adds what only the running
pipeline knows: the current stage, items per second since this run started (batches done by an
earlier run are not counted as speed), an estimate of the seconds left, and what the analysis is
waiting for while a downstream service is down (shown with its warnings, ``waiting for ...``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from briefxai_common.logging import get_logger

from .models import STAGES, AnalysisState, Stage, StageProgress
from .performance import StageTiming

log = get_logger(__name__)

BATCH_STAGES = (Stage.FACETS, Stage.EMBED)


def derive_stage(state: AnalysisState, progress: Mapping[Stage, StageProgress]) -> Stage:
    """The stage an analysis is in (or stopped in): the first one not finished; VALIDATE while PENDING."""
    if state is AnalysisState.PENDING:
        return Stage.VALIDATE
    if state is AnalysisState.SUCCEEDED:
        return Stage.STORE
    for stage in STAGES:
        item = progress.get(stage)
        if item is not None and item.done < item.total:
            return stage
    return Stage.STORE


@dataclass
class _StageClock:
    started: float
    done_at_start: int
    last_item: float | None = None  # when the stage's latest item of this run finished


@dataclass
class LiveProgress:
    analysis_id: str
    total: int
    stage: Stage = Stage.VALIDATE
    done: dict[Stage, int] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    _clocks: dict[Stage, _StageClock] = field(default_factory=dict)
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def begin(self, stage: Stage, already_done: int = 0) -> None:
        """``stage`` starts (or resumes with ``already_done`` items finished by an earlier run)."""
        self.done[stage] = already_done
        self._clocks[stage] = _StageClock(self.clock(), already_done)

    def advance(self, stage: Stage, items: int) -> None:
        self.done[stage] = self.done.get(stage, 0) + items
        clock = self._clocks.get(stage)
        if clock is not None:
            clock.last_item = self.clock()

    def stage_times(self) -> dict[Stage, StageTiming]:
        """Per stage that finished items in this run: how many, and its wall seconds from its start to
        its last item. Facets and embedding run side by side on each batch, so theirs overlap."""
        times = {}
        for stage, clock in self._clocks.items():
            items = self.done.get(stage, 0) - clock.done_at_start
            if items > 0 and clock.last_item is not None:
                times[stage] = StageTiming(items, max(0.0, clock.last_item - clock.started))
        return times

    def run_seconds(self) -> float:
        """Seconds since this run started."""
        return self.clock() - self.started

    def rate(self, stage: Stage) -> float:
        """Items per second of ``stage`` in this run; 0 before its first item."""
        clock = self._clocks.get(stage)
        if clock is None:
            return 0.0
        items = self.done.get(stage, 0) - clock.done_at_start
        elapsed = self.clock() - clock.started
        if items <= 0 or elapsed <= 0:
            return 0.0
        return items / elapsed

    def current_rate(self) -> float:
        return self.rate(self.stage)

    def eta_seconds(self) -> float:
        """Seconds until facets and embedding are done at the current rates; -1 when unknown
        (no rate yet, or in the cluster/store stages whose length cannot be told in advance)."""
        if self.stage not in (Stage.VALIDATE, *BATCH_STAGES):
            return -1.0
        worst = 0.0
        for stage in BATCH_STAGES:
            remaining = self.total - self.done.get(stage, 0)
            if remaining <= 0:
                continue
            rate = self.rate(stage)
            if rate <= 0:
                return -1.0
            worst = max(worst, remaining / rate)
        return worst


class ProgressHub:
    """Live progress per running analysis, and events that wake WatchAnalysis streams."""

    def __init__(self) -> None:
        self._live: dict[str, LiveProgress] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, dict[str, str]] = {}  # analysis id -> service -> note
        # analysis id -> service -> (monotonic start of the current wait or None, seconds waited before)
        self._waited: dict[str, dict[str, tuple[float | None, float]]] = {}
        self._finish_listeners: list[Callable[[LiveProgress], None]] = []

    def on_finish(self, listener: Callable[[LiveProgress], None]) -> None:
        """Calls ``listener`` with the live progress of each run that ends (in any state) from now on.
        It runs inside the pipeline's task: it must be quick and must not block."""
        self._finish_listeners.append(listener)

    def start(self, analysis_id: str, total: int) -> LiveProgress:
        live = LiveProgress(analysis_id, total)
        self._live[analysis_id] = live
        self.notify(analysis_id)
        return live

    def live(self, analysis_id: str) -> LiveProgress | None:
        return self._live.get(analysis_id)

    def waiting(self, analysis_id: str, service: str, note: str) -> None:
        """The analysis waits for ``service`` (``note`` says since when, and for how long at most)."""
        waits = self._waited.setdefault(analysis_id, {})
        began, before = waits.get(service, (None, 0.0))
        if began is None:
            waits[service] = (time.monotonic(), before)
        notes = self._waiting.setdefault(analysis_id, {})
        if notes.get(service) != note:
            notes[service] = note
            self.notify(analysis_id)

    def done_waiting(self, analysis_id: str, service: str) -> None:
        waits = self._waited.get(analysis_id, {})
        began, before = waits.get(service, (None, 0.0))
        if began is not None:
            waits[service] = (None, before + time.monotonic() - began)
        notes = self._waiting.get(analysis_id, {})
        if notes.pop(service, None) is not None:
            if not notes:
                self._waiting.pop(analysis_id, None)
            self.notify(analysis_id)

    def waited_seconds(self, analysis_id: str) -> dict[str, float]:
        """Seconds this run of the analysis has waited for each downstream that was down (outages over
        and in progress), so that its results record that it ran degraded."""
        now = time.monotonic()
        return {
            service: before + (now - began if began is not None else 0.0)
            for service, (began, before) in self._waited.get(analysis_id, {}).items()
        }

    def waiting_notes(self, analysis_id: str) -> list[str]:
        return [note for _, note in sorted(self._waiting.get(analysis_id, {}).items())]

    def finish(self, analysis_id: str) -> None:
        self._waiting.pop(analysis_id, None)
        self._waited.pop(analysis_id, None)
        live = self._live.pop(analysis_id, None)
        self.notify(analysis_id)
        if live is None:
            return
        for listener in self._finish_listeners:
            try:
                listener(live)
            except Exception:
                log.exception("progress_listener_failed", analysis_id=analysis_id)

    def event(self, analysis_id: str) -> asyncio.Event:
        """An event set at the next change of ``analysis_id``; take it before reading the state."""
        event = self._events.get(analysis_id)
        if event is None:
            event = self._events[analysis_id] = asyncio.Event()
        return event

    def notify(self, analysis_id: str) -> None:
        event = self._events.pop(analysis_id, None)
        if event is not None:
            event.set()
