"""Feature flags: named on/off switches read at run time and changed by a config reload.

A service declares the flags it reads (:class:`Flag`: name, default, what it gates) and holds one
:class:`FeatureFlags`; its code asks ``flags.enabled("name")`` at the moment it decides, so a reload
(SIGHUP, ``reload.py``) takes effect at the next decision without a restart. Values come from the
config file's top-level ``features:`` mapping (every service reads it; a service's own
``features:`` key and ``BRIEFXAI_<SECTION>_FEATURES__<NAME>`` override it). A configured name the
service does not declare is reported (a typo, or another service's flag) and otherwise ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

FLAG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    default: bool
    description: str

    def __post_init__(self) -> None:
        if not FLAG_NAME.match(self.name):
            raise ValueError(f"feature flag name {self.name!r} must match {FLAG_NAME.pattern}")


class FeatureFlags:
    """The current value of each declared flag; configured values over the declared defaults."""

    def __init__(self, flags: Iterable[Flag], values: Mapping[str, bool] | None = None) -> None:
        self._flags = {flag.name: flag for flag in flags}
        self._values = {name: flag.default for name, flag in self._flags.items()}
        self._unknown: list[str] = []
        self.update(values or {})

    @property
    def flags(self) -> list[Flag]:
        return list(self._flags.values())

    @property
    def unknown(self) -> list[str]:
        """Configured names this service does not declare (as of the last update)."""
        return list(self._unknown)

    def enabled(self, name: str) -> bool:
        """The flag's value now; KeyError for a flag this service never declared (a programming error)."""
        if name not in self._values:
            raise KeyError(f"undeclared feature flag {name!r}")
        return self._values[name]

    def update(self, values: Mapping[str, bool]) -> dict[str, bool]:
        """Takes the configured ``values`` (a name left out goes back to its default); returns the flags
        whose value changed, with their new value."""
        new = {name: bool(values.get(name, flag.default)) for name, flag in self._flags.items()}
        changed = {name: value for name, value in new.items() if self._values[name] != value}
        self._values = new
        self._unknown = sorted(name for name in values if name not in self._flags)
        return changed

    def snapshot(self) -> dict[str, bool]:
        return dict(self._values)
