"""`slip-eval report`: one static HTML page from result files, for comparing SLIP with CLIP at a
glance: metric tables, plots, a retrieval gallery and a co-purchase neighbourhood.

One job per module: `entries` reads the results and run logs, `ranking` ranks the gallery's
queries and picks the neighbourhood, `plots` draws the figures, `page` writes the HTML,
`publish` swaps the finished folder into place, and `build` puts them in order.
"""

from slip_eval.report.build import build_report

__all__ = ["build_report"]
