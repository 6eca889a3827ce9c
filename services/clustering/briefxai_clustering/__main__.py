"""``python -m briefxai_clustering``: serves the clustering service until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from briefxai_clustering.server import build_service
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.bootstrap import run_service
from briefxai_common.config import ConfigError


def main() -> int:
    try:
        service = build_service(ClusteringSettings.load())
    except ConfigError as error:
        print(f"briefxai-clustering: {error}", file=sys.stderr)
        return 2
    run_service(service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
