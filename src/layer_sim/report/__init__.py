"""Views of results: figures, tables, files, and the report of a store. Only the CLI imports this package; results never do.

- :mod:`~layer_sim.report.figures`: heatmaps of similarity matrices, grids, per-layer accuracy;
  ``save_figure`` writes any figure atomically.
- :mod:`~layer_sim.report.tables`: records as Markdown, CSV and JSON.
- :mod:`~layer_sim.report.files`: a ``SimilarityMatrix`` saved to and loaded from CSV/JSON.
- :mod:`~layer_sim.report.sections`: the report of a results store as a document, one section per
  recorded experiment from a registry of renderers (``@section(name, title=...)``), with provenance.
- :mod:`~layer_sim.report.html`, :mod:`~layer_sim.report.markdown`: that document as one
  self-contained HTML page, and as Markdown with its figures beside it.
- :mod:`~layer_sim.report.sanity`, :mod:`~layer_sim.report.seeds`,
  :mod:`~layer_sim.report.gradient_study`: each experiment's output files and report section.
"""
