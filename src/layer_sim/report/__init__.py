"""Views of results: tables, figures and files. Results never import this package."""
