"""Tables and plots of sweep results: `imlsweep.report.build.build_report(sweep_dir)` writes the HTML page and PNG figures."""
