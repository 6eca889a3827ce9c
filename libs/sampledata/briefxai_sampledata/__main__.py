"""``python -m briefxai_sampledata``: write labelled synthetic conversations (see ``--help``)."""

from __future__ import annotations

from briefxai_sampledata.generator import main

if __name__ == "__main__":
    raise SystemExit(main())
