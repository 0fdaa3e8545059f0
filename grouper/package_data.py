"""Where the package's data folders are, installed or in a source checkout.

Installed, grammars/ and tables/ are the packages grouper.grammars and grouper.tables (package-dir
in pyproject.toml). In a source checkout they sit beside grouper/, and the checkout's grouper/
shadows the installed package whenever Python runs from the checkout (the README's examples, a
notebook in the repository): there is no grouper.grammars there, so the folder beside is used.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["data_dir"]


def data_dir(name: str) -> Path:
    """The folder of `grouper.<name>` ("grammars" or "tables")."""
    try:
        return Path(str(resources.files(f"grouper.{name}")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / name
