"""``python -m briefxai_facets``: serves the facets service until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from briefxai_common.bootstrap import run_service
from briefxai_common.config import ConfigError
from briefxai_facets.server import build_service
from briefxai_facets.settings import FacetsSettings


def main() -> int:
    try:
        service = build_service(FacetsSettings.load())
    except ConfigError as error:
        print(f"briefxai-facets: {error}", file=sys.stderr)
        return 2
    run_service(service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
