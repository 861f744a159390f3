"""Tables and plots of sweep results: `build_report(sweep_dir)` writes report.html and PNG figures."""

from imlsweep.report.build import ReportPaths, build_report

__all__ = ["ReportPaths", "build_report"]
