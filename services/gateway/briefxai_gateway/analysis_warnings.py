"""An analysis's warnings as people read them, from the {key: count} tallies kept in checkpoints."""

from __future__ import annotations

from collections.abc import Mapping


def render_warnings(counts: Mapping[str, int]) -> list[str]:
    """Human-readable warnings from the {key: count} tallies kept in checkpoints."""
    lines: list[str] = []
    for key in sorted(counts):
        n = counts[key]
        if n <= 0:
            continue
        if key.startswith("facet_failed:"):
            lines.append(f"facet '{key.split(':', 1)[1]}' could not be extracted for {n} conversation(s)")
        elif key == "request_summary_fallback":
            lines.append(
                f"{n} conversation(s) had no usable 'request' facet; their first user message was embedded"
            )
        elif key == "withheld":
            lines.append(
                f"{n} conversation(s) withheld by the privacy thresholds (cluster too small or too few users)"
            )
        else:
            lines.append(f"{key}: {n}")
    return lines
