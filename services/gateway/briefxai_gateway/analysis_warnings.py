"""An analysis's warnings as people read them, from the {key: count} tallies kept in checkpoints."""

from __future__ import annotations

from collections.abc import Mapping

# Conversations of erased users deleted from a finished analysis (``store/users.py``): its results are stale.
ERASED_USER_CONVERSATIONS = "erased_user_conversations"


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
        elif key.startswith("facets_served_by:"):
            lines.append(
                f"{n} facet value(s) came from '{key.split(':', 1)[1]}', not the first provider of the chain "
                "(it failed over, or the first provider does not answer that facet)"
            )
        elif key.startswith("waited_for:"):
            lines.append(
                f"ran degraded: waited {n} s for the {key.split(':', 1)[1]} service, which was unavailable; "
                "the analysis went on once it was back"
            )
        elif key == ERASED_USER_CONVERSATIONS:
            lines.append(
                f"{n} conversation(s) of erased user(s) were deleted after this analysis ran; its clusters, "
                "names, counts and distributions were computed with them and are stale: re-run the "
                "analysis to recompute them"
            )
        elif key == "withheld":
            lines.append(
                f"{n} conversation(s) withheld by the privacy thresholds (cluster too small or too few users)"
            )
        else:
            lines.append(f"{key}: {n}")
    return lines
