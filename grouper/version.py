"""The package version, in the lowest layer: the plan cache keys on it and the faces print it
(grouper/__init__.py re-exports it as grouper.__version__; pyproject.toml states the same number)."""
__version__ = "0.1.0"
