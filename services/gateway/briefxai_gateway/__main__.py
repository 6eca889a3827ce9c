"""``python -m briefxai_gateway``: serves the public AnalysisService until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from briefxai_common.bootstrap import serve_main
from briefxai_gateway.server import build_service
from briefxai_gateway.settings import GatewaySettings


def main() -> int:
    return serve_main("gateway", GatewaySettings, build_service)


if __name__ == "__main__":
    sys.exit(main())
