"""Where each key of a TOML document is written: key path → (line, column).

`tomllib` parses TOML but keeps no positions, and a policy error must name the file and line.
This module walks the *structure* of a document that `tomllib` has already accepted (so it
never has to report syntax errors itself): table headers, arrays of tables, dotted keys,
inline tables and arrays (which may span lines), the four string forms and comments. Values
are skipped, not interpreted.

Paths use the data's shape: table and key names are strings, array positions are ints, so
`[[sharing.surplus]]`'s second `retain` is ("sharing", "surplus", 1, "retain").
"""
from __future__ import annotations

Path = tuple
Position = tuple  # (line, column), both 1-based

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _Scanner:
    def __init__(self, text: str):
        self.text = text
        self.i = 0
        self.line = 1
        self.line_start = 0
        self.positions: dict[Path, Position] = {}
        self.array_tables: dict[Path, int] = {}  # resolved path of an array of tables → last index

    # -- characters -------------------------------------------------------------------------
    def peek(self, n: int = 0) -> str:
        j = self.i + n
        return self.text[j] if j < len(self.text) else ""

    def advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self.i < len(self.text) and self.text[self.i] == "\n":
                self.line += 1
                self.line_start = self.i + 1
            self.i += 1

    def here(self) -> Position:
        return (self.line, self.i - self.line_start + 1)

    def skip_blank(self, *, newlines: bool) -> None:
        """Spaces and tabs; with `newlines`, also line breaks and comments."""
        while self.i < len(self.text):
            c = self.peek()
            if c in " \t":
                self.advance()
            elif newlines and c in "\r\n":
                self.advance()
            elif newlines and c == "#":
                self.skip_comment()
            else:
                return

    def skip_comment(self) -> None:
        while self.i < len(self.text) and self.peek() != "\n":
            self.advance()

    # -- pieces -----------------------------------------------------------------------------
    def string(self) -> str:
        """Read a string starting at the cursor; return its raw text (escapes are not needed for keys)."""
        quote = self.peek()
        if self.peek(1) == quote and self.peek(2) == quote:
            self.advance(3)
            end = quote * 3
            start = self.i
            while self.i < len(self.text):
                if quote == '"' and self.peek() == "\\":
                    self.advance(2)
                    continue
                if self.text.startswith(end, self.i):
                    # up to two quotes may end the content just before the closing three
                    while self.peek(3) == quote:
                        self.advance()
                    value = self.text[start:self.i]
                    self.advance(3)
                    return value
                self.advance()
            return self.text[start:]
        self.advance()
        chars = []
        while self.i < len(self.text) and self.peek() != quote:
            if quote == '"' and self.peek() == "\\":
                chars.append(_unescape(self.peek(1)))
                self.advance(2)
                continue
            chars.append(self.peek())
            self.advance()
        self.advance()
        return "".join(chars)

    def key(self) -> list[tuple[str, Position]]:
        """A (possibly dotted) key: its parts with their positions."""
        parts = []
        while True:
            self.skip_blank(newlines=False)
            at = self.here()
            if self.peek() in "\"'":
                parts.append((self.string(), at))
            else:
                start = self.i
                while self.peek() and self.peek() in _BARE:
                    self.advance()
                parts.append((self.text[start:self.i], at))
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return parts
            self.advance()

    def value(self, path: Path) -> None:
        c = self.peek()
        if c in "\"'":
            self.string()
        elif c == "[":
            self.advance()
            index = 0
            while True:
                self.skip_blank(newlines=True)
                if self.peek() in ("]", ""):
                    self.advance()
                    return
                self.value((*path, index))
                index += 1
                self.skip_blank(newlines=True)
                if self.peek() == ",":
                    self.advance()
        elif c == "{":
            self.advance()
            while True:
                self.skip_blank(newlines=True)
                if self.peek() in ("}", ""):
                    self.advance()
                    return
                self.key_value(path)
                self.skip_blank(newlines=True)
                if self.peek() == ",":
                    self.advance()
        else:  # number, boolean, date: runs to a delimiter
            while self.peek() and self.peek() not in ",]}\n\r#":
                if self.peek() == " " and not _date_time_space(self.text, self.i):
                    break
                self.advance()

    def key_value(self, table: Path) -> None:
        path = table
        for name, at in self.key():
            path = (*path, name)
            self.positions.setdefault(path, at)
        self.skip_blank(newlines=False)
        self.advance()  # '='
        self.skip_blank(newlines=False)
        self.value(path)

    def header(self) -> Path:
        """`[a.b]` or `[[a.b]]`; returns the table path that following keys belong to."""
        many = self.peek(1) == "["
        self.advance(2 if many else 1)
        parts = self.key()
        self.advance(2 if many else 1)
        path: Path = ()
        for n, (name, at) in enumerate(parts):
            path = (*path, name)
            last = n == len(parts) - 1
            if last and many:
                index = self.array_tables.get(path, -1) + 1
                self.array_tables[path] = index
                self.positions.setdefault(path, at)
                path = (*path, index)
                self.positions[path] = at
            else:
                self.positions.setdefault(path, at)
                if path in self.array_tables:
                    path = (*path, self.array_tables[path])
        return path

    def document(self) -> dict[Path, Position]:
        table: Path = ()
        while True:
            self.skip_blank(newlines=True)
            if self.i >= len(self.text):
                return self.positions
            if self.peek() == "[":
                table = self.header()
            else:
                self.key_value(table)
            self.skip_blank(newlines=False)
            if self.peek() == "#":
                self.skip_comment()


def _unescape(c: str) -> str:
    return {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(c, c)


def _date_time_space(text: str, i: int) -> bool:
    """A space between a date and a time (`1979-05-27 07:32:00`) belongs to the value."""
    return i >= 10 and text[i - 3] == "-" and text[i + 1:i + 2].isdigit() and text[i - 10:i - 6].isdigit()


def key_positions(text: str) -> dict[Path, Position]:
    """Map every key path of a valid TOML document to the (line, column) where its key is written."""
    return _Scanner(text).document()


def position_of(positions: dict[Path, Position], path: Path) -> Position:
    """The position of `path`, or of its nearest ancestor that is written (a default has none)."""
    while path:
        if path in positions:
            return positions[path]
        path = path[:-1]
    return (1, 1)
