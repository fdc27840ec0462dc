"""The package version, in one place: read by ``pyproject.toml`` (setuptools ``attr:``) and by code."""

__version__ = "0.1.0"
