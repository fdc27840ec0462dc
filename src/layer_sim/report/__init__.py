"""Views of results: figures, tables and files. Only the CLI imports this package; results never do.

- :mod:`~layer_sim.report.figures`: heatmaps of similarity matrices, grids, per-layer accuracy;
  ``save_figure`` writes any figure atomically.
- :mod:`~layer_sim.report.tables`: records as Markdown, CSV and JSON.
- :mod:`~layer_sim.report.files`: a ``SimilarityMatrix`` saved to and loaded from CSV/JSON.
- :mod:`~layer_sim.report.sanity`: every output file of the sanity check.
"""
