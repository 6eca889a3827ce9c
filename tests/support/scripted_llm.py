"""The facets service's LLM as the scripted OpenAI-compatible server (``fake_openai.py``) plays it in the
fault tests and the soak: answers that differ per conversation (so a value given to the wrong
conversation shows), the facets service's environment pointing at the server with short timeouts, and the
LLM faults of issue 11 as scripted behaviours.

Each answer is a function of the conversation's transcript alone (the part of the prompt between
``<conversation>`` tags), not of which facets a request asks for, so a retry that asks only for the facets
still missing gets the same values as a first try would have. The schema is read from the request in
whichever ``response_format`` it came (a provider that took bare 500s for a refusal of ``json_schema``
moves down to ``json_object`` or to the schema in the prompt).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from tests.support.fake_openai import JSON, Behaviour

MODEL = "scripted-model"
PROVIDER = f"openai:{MODEL}"  # the facet values' provider, and the failover series' ``from``
UNSET_KEY_ENV = "BRIEFXAI_TEST_UNSET_KEY"  # no API key: the server asks for none
TRANSCRIPT = re.compile(r"<conversation>\n(.*?)\n</conversation>", re.S)
SCHEMA_IN_PROMPT = "valid against this JSON schema:\n"  # briefxai_common.llm.schema_instructions
TOPICS = ("billing", "travel", "cooking", "gardening", "fitness", "printers", "taxes", "music")
#: The faults, by name: what the server does to one request.
LLM_FAULTS: dict[str, Callable[[], Behaviour]] = {
    "rate_limited": lambda: Behaviour.rate_limited(retry_after=0.2),  # 429 with Retry-After
    "server_error": lambda: Behaviour.server_error(500),
    "hang": Behaviour.hang_forever,  # past the provider's timeout_seconds
    "malformed_json": Behaviour.malformed_json,  # a 200 whose content is not JSON
    "broken_body": Behaviour.broken_body,  # a 200 whose body is not JSON
}


def _user_message(request: JSON) -> str:
    return str(next(m["content"] for m in request["messages"] if m["role"] == "user"))


def transcript_digest(request: JSON) -> int:
    """A number fixed by the conversation in a chat request (its transcript, hashed)."""
    found = TRANSCRIPT.search(_user_message(request))
    if found is None:
        raise ValueError("the chat request carries no <conversation> block")
    return int.from_bytes(hashlib.sha256(found.group(1).encode()).digest()[:8], "little")


def _answer(name: str, schema: JSON, digest: int) -> Any:
    if schema.get("type") == "object":
        value = _answer(name, schema["properties"]["value"], digest)
        return {"value": value, "reason": f"A scripted reason for {name}."}
    if "enum" in schema:
        return schema["enum"][digest % len(schema["enum"])]
    if schema.get("type") == "number":
        low = float(schema.get("minimum", 0.0))
        high = float(schema.get("maximum", low + 1.0))
        return round(low + (high - low) * ((digest >> 8) % 101) / 100, 2)
    if name == "language":
        return "en"
    return f"The user asks about {TOPICS[(digest >> 16) % len(TOPICS)]} ({name} {digest % 997})."


def requested_schema(request: JSON) -> JSON:
    """The JSON schema a chat request asks its reply to follow."""
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return dict(response_format["json_schema"]["schema"])
    if response_format.get("type") == "json_object" and "schema" in response_format:
        return dict(response_format["schema"])
    return dict(json.loads(_user_message(request).rsplit(SCHEMA_IN_PROMPT, 1)[1]))


def scripted_reply(request: JSON) -> str:
    """The valid JSON answer to the facets a request asks for, for its conversation."""
    schema = requested_schema(request)
    digest = transcript_digest(request)
    return json.dumps({name: _answer(name, sub, digest) for name, sub in schema["properties"].items()})


def facets_llm_env(base_url: str) -> dict[str, str]:
    """The facets service's environment for providers ``[openai, heuristic]`` against ``base_url``: a
    request times out after 1 s and is tried twice, and the provider's breaker opens after 3 failures in a
    row and is probed (GET /models) every 0.2 s once 0.5 s have passed."""
    prefix = "BRIEFXAI_FACETS_"
    return {
        f"{prefix}PROVIDERS": '["openai", "heuristic"]',
        f"{prefix}OPENAI__BASE_URL": base_url,
        f"{prefix}OPENAI__MODEL": MODEL,
        f"{prefix}OPENAI__API_KEY_ENV": UNSET_KEY_ENV,
        f"{prefix}OPENAI__TIMEOUT_SECONDS": "1",
        f"{prefix}OPENAI__MAX_ATTEMPTS": "2",
        f"{prefix}OPENAI__BACKOFF_INITIAL_SECONDS": "0.05",
        f"{prefix}OPENAI__BACKOFF_MAX_SECONDS": "0.5",
        f"{prefix}CIRCUIT_BREAKERS__LLM_PROVIDER__FAILURE_THRESHOLD": "3",
        f"{prefix}CIRCUIT_BREAKERS__LLM_PROVIDER__OPEN_TIMEOUT_MS": "500",
        f"{prefix}CIRCUIT_BREAKERS__LLM_PROVIDER__PROBE_INTERVAL_MS": "200",
    }
