"""grouper: a DRG (CHS-DRG) and DIP grouper for China's medical-insurance payment reform, with settlement (grouper.dip, grouper.payment).

    import grouper
    scheme = grouper.load_scheme("packs/chs-drg-1.1")     # parse → check → compile
    results = grouper.group("discharges.csv", scheme)      # id, status, mdc, adrg, drg, reason
"""
from ._lazy import lazy_names
from .version import __version__

# The API is loaded on first use (PEP 562), so that `grouper ...` on the command line starts without
# Polars and can size its thread pool first (`grouper group --threads`; see grouper.cli).
_EXPORTS = {"group": ".api", "group_batches": ".api", "group_file": ".api", "Diagnostic": ".errors",
            "GrouperError": ".errors", "InputError": ".errors", "SchemeError": ".errors", "read_cases": ".io",
            "write_results": ".io", "check_scheme": ".scheme", "load_scheme": ".scheme"}

__all__ = ["Diagnostic", "GrouperError", "InputError", "SchemeError", "check_scheme", "group", "group_batches",
           "group_file", "load_scheme", "read_cases", "write_results", "__version__"]


__getattr__ = lazy_names(__name__, globals(), _EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
