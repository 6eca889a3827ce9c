"""``python -m briefxai_embedding``: serves the embedding service until SIGTERM/SIGINT."""

from __future__ import annotations

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub: never reach for a hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from briefxai_common.bootstrap import serve_main
from briefxai_embedding.server import build_service
from briefxai_embedding.settings import EmbeddingSettings


def main() -> int:
    return serve_main("embedding", EmbeddingSettings, build_service)


if __name__ == "__main__":
    sys.exit(main())
