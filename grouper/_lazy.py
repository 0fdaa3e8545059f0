"""A package's names loaded on first use (PEP 562): `__getattr__ = lazy_names(__name__, globals(), {...})`.

Kept free of imports: grouper/__init__.py uses it, and `grouper ...` on the command line starts
without Polars (see grouper.cli)."""


def lazy_names(package: str, namespace: dict, modules: dict[str, str]):
    """The module `__getattr__` of `package`: each name of `modules` taken from the module named there
    (relative to the package), imported when the name is first asked for and then kept in
    `namespace` (the package's globals)."""

    def __getattr__(name: str):
        if name in modules:
            import importlib

            value = getattr(importlib.import_module(modules[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
