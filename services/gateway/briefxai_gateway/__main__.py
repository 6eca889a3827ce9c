"""``python -m briefxai_gateway``: serves the public AnalysisService until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from briefxai_common.bootstrap import run_service
from briefxai_common.config import ConfigError
from briefxai_gateway.server import build_service
from briefxai_gateway.settings import GatewaySettings


def main() -> int:
    try:
        service = build_service(GatewaySettings.load())
    except ConfigError as error:
        print(f"briefxai-gateway: {error}", file=sys.stderr)
        return 2
    run_service(service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
