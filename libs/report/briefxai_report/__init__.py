"""The analyst's HTML report of an analysis: the 2-D map, the collapsible cluster tree with facet
charts, and the run's options, timings and what the privacy rule withheld, in one self-contained file.

It reads the JSON of a GetAnalysisResultsResponse with every page merged (what ``briefxai results``
writes as ``analysis.json``), so it needs neither gRPC nor protobuf; the CLI (``briefxai report``) and
the gateway (``GET /analyses/{id}/report``) both use it.

    from briefxai_report import render_report, write_report
    write_report(json.load(open("analysis.json")), Path("report.html"))
"""

from __future__ import annotations

from briefxai_report.model import ReportData, ReportError, parse_results
from briefxai_report.render import map_data, render_report, write_report

__all__ = ["ReportData", "ReportError", "map_data", "parse_results", "render_report", "write_report"]
