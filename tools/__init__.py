"""Repository tools run by the Makefile: ``make security`` runs the licence check and pip-audit."""
