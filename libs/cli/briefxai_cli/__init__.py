"""The ``briefxai`` command line: run the suite locally, analyse conversation files, evaluate clusters."""
