"""``python -m briefxai_clustering``: serves the clustering service until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from briefxai_clustering.server import build_service
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.bootstrap import serve_main


def main() -> int:
    return serve_main("clustering", ClusteringSettings, build_service)


if __name__ == "__main__":
    sys.exit(main())
