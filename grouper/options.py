"""Command-line options shared by the commands of every wing: the reader's options (the same for
every command that reads cases: `group`, `explain --cases`, `crosswalk`, ...) and number types."""
from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

__all__ = ["add_reading_arguments", "at_least", "column_mapping", "number_at_least", "reading_arguments"]


def at_least(minimum: int):
    """An argparse type: a whole number >= minimum (a usage error otherwise, exit 2)."""
    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value
    return whole_number


def number_at_least(minimum: int, *, exclusive: bool = False, exact: bool = False):
    """An argparse type: a finite number >= minimum (> minimum when `exclusive`), as a float (a
    Decimal when `exact`); NaN, infinities and smaller numbers are usage errors (exit 2)."""
    def number(text: str) -> float | Decimal:
        try:
            value = Decimal(text.strip())
        except InvalidOperation:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value.is_finite() or not math.isfinite(float(value)):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if value < minimum or (exclusive and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {f'above {minimum}' if exclusive else f'{minimum} or more'}, got {text}")
        return value if exact else float(value)
    return number


def column_mapping(pairs: Iterable[str] | None) -> dict[str, str]:
    """`--column NAME=HEADER` options → the `columns` mapping of read_cases."""
    mapping = {}
    for pair in pairs or ():
        name, sep, header = pair.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--column expects NAME=HEADER, got {pair!r}")
        mapping[name.strip()] = header.strip()
    return mapping


def add_reading_arguments(parser, *, what: str = "the cases") -> None:
    """The command-line options of the reader, the same for every command that reads cases:
    --encoding, --column, --skip-rows, --sheet (reading_arguments gives read_cases' keywords)."""
    parser.add_argument("--encoding", help=f"CSV encoding of {what} (default: detect UTF-8, else GB18030)")
    parser.add_argument("--column", action="append", metavar="NAME=HEADER",
                        help="map a field to an input header, e.g. --column dx=诊断编码 (repeatable)")
    parser.add_argument("--skip-rows", type=at_least(0), default=0, metavar="N",
                        help="title lines (CSV) or rows (Excel) above the header to leave out")
    parser.add_argument("--sheet", metavar="NAME|all",
                        help="Excel input: the sheet to read (name or number), or `all` (default: the first; "
                             "a note says when the workbook has others)")


def reading_arguments(args) -> dict:
    """The keywords of read_cases (encoding, columns, sheet, skip_rows) from add_reading_arguments' options."""
    return {"encoding": args.encoding, "columns": column_mapping(args.column), "sheet": args.sheet,
            "skip_rows": args.skip_rows}


