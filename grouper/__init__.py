"""grouper: a DRG (CHS-DRG) and DIP grouper for China's medical-insurance payment reform, with settlement (grouper.dip, grouper.payment).

    import grouper
    scheme = grouper.load_scheme("packs/chs-drg-1.1")     # parse → check → compile
    results = grouper.group("discharges.csv", scheme)      # id, status, mdc, adrg, drg, reason
"""
from .api import group, group_batches, group_file
from .errors import Diagnostic, GrouperError, InputError, SchemeError
from .io import read_cases, write_results
from .scheme import check_scheme, load_scheme
from .version import __version__

__all__ = ["Diagnostic", "GrouperError", "InputError", "SchemeError", "check_scheme", "group", "group_batches",
           "group_file", "load_scheme", "read_cases", "write_results", "__version__"]
