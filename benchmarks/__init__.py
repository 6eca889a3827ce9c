"""BriefXAI benchmarks: ``python -m benchmarks.run --smoke|--full`` (``make bench-smoke`` / ``make bench``).

Measurements, never tests: they write figures (``benchmarks/results/*.json``, ``docs/benchmarks.md``)
and assert nothing about timings.
"""
