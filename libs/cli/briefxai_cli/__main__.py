"""``python -m briefxai_cli`` is the ``briefxai`` command."""

from briefxai_cli.main import main

main()
