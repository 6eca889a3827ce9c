"""``python -m briefxai_facets``: serves the facets service until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from briefxai_common.bootstrap import serve_main
from briefxai_facets.server import build_service
from briefxai_facets.settings import FacetsSettings


def main() -> int:
    return serve_main("facets", FacetsSettings, build_service)


if __name__ == "__main__":
    sys.exit(main())
