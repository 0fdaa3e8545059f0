"""The settle engine's rules worked out on one case's Python values, with Polars' semantics.

Each rule of the settle engine (grouper/payment/settle.py: the coefficient and price, the steps that
type a case, the points formulas, the payment) is written once, as a builder over an `ops` namespace:
`settle.POLARS` makes it a Polars expression over a frame (`grouper settle`, `price_cases`), and
`RowOps(values)` here works the same builder out on one case (`settle.price_one`: the one-case
estimate, where fifty Polars calls on a one-row frame would cost ~13 ms). A `Value` behaves as the
Polars expression does on that row:

- null (None) propagates through arithmetic and comparisons; `&` and `|` are Kleene (null & False
  is False, null | True is True); a when/then test that is null does not hold;
- integers are exact (Python ints; the engine's Int128 products fit 128 bits), `//` floors and a
  division by zero is null, as Polars' integer division;
- `cast(Int64, strict=False)` is null outside 64 bits; `min_horizontal` skips nulls; `is_in` of a
  null is null; `clip` keeps a null;
- `deferred(make)`: a rule a when/then works out only when its test holds (one formula per case,
  not every type's); Polars builds it at once.

Only the operations the builders use are here; a builder reading another one fails loudly.
"""
from __future__ import annotations

import math

import polars as pl

_INT_RANGES = {pl.Int64: 63, pl.Int32: 31, pl.Int16: 15, pl.Int8: 7}


def _raw(x):
    return x.v if isinstance(x, Value) else x


class Value:
    """One row's value of an expression (`v`: a Python int, bool, str, date, timedelta, float or None)."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def __repr__(self) -> str:
        return f"Value({self.v!r})"

    def _apply(self, other, fn) -> "Value":
        o = _raw(other)
        return Value(None if self.v is None or o is None else fn(self.v, o))

    def __add__(self, o): return self._apply(o, lambda a, b: a + b)
    def __radd__(self, o): return self._apply(o, lambda a, b: b + a)
    def __sub__(self, o): return self._apply(o, lambda a, b: a - b)
    def __rsub__(self, o): return self._apply(o, lambda a, b: b - a)
    def __mul__(self, o): return self._apply(o, lambda a, b: a * b)
    def __rmul__(self, o): return self._apply(o, lambda a, b: b * a)
    def __floordiv__(self, o): return self._apply(o, lambda a, b: None if b == 0 else a // b)
    def __rfloordiv__(self, o): return self._apply(o, lambda a, b: None if a == 0 else b // a)
    def __truediv__(self, o): return self._apply(o, lambda a, b: a / b)
    def __lt__(self, o): return self._apply(o, lambda a, b: a < b)
    def __le__(self, o): return self._apply(o, lambda a, b: a <= b)
    def __gt__(self, o): return self._apply(o, lambda a, b: a > b)
    def __ge__(self, o): return self._apply(o, lambda a, b: a >= b)
    def __eq__(self, o): return self._apply(o, lambda a, b: a == b)  # type: ignore[override]
    def __ne__(self, o): return self._apply(o, lambda a, b: a != b)  # type: ignore[override]
    __hash__ = None  # type: ignore[assignment]

    def _kleene(self, other, decisive: bool) -> "Value":
        """`&` (decisive False) or `|` (decisive True) with nulls: the decisive value wins over a null."""
        a, b = self.v, _raw(other)
        if a is decisive or b is decisive:
            return Value(decisive)
        return Value(None if a is None or b is None else not decisive)

    def __and__(self, o): return self._kleene(o, False)
    def __or__(self, o): return self._kleene(o, True)
    __rand__, __ror__ = __and__, __or__

    def __invert__(self):
        return Value(None if self.v is None else not self.v)

    def __bool__(self):
        raise TypeError("a row Value is not a Python truth value: test `.v`, as a when/then does")

    def alias(self, _name: str) -> "Value":
        return self

    def is_null(self) -> "Value":
        return Value(self.v is None)

    def is_not_null(self) -> "Value":
        return Value(self.v is not None)

    def fill_null(self, value) -> "Value":
        return self if self.v is not None else Value(_raw(value))

    def is_in(self, values) -> "Value":
        return Value(None if self.v is None else self.v in set(values))

    def clip(self, lower_bound=None, upper_bound=None) -> "Value":
        v = self.v
        if v is None:
            return self
        if lower_bound is not None and v < lower_bound:
            v = lower_bound
        if upper_bound is not None and v > upper_bound:
            v = upper_bound
        return Value(v)

    def cast(self, dtype, strict: bool = True) -> "Value":
        v = self.v
        if v is None:
            return self
        if dtype == pl.String:
            return Value(str(v))
        if dtype == pl.Boolean:
            return Value(bool(v))
        bits = _INT_RANGES.get(dtype)
        if bits is not None:
            if isinstance(v, float) and math.isfinite(v):
                v = int(v)  # Polars casts a float to an integer by truncation
            if not isinstance(v, int) or not -(1 << bits) <= v < (1 << bits):
                if strict:
                    raise OverflowError(f"{v!r} does not fit {dtype}")
                return Value(None)
        return Value(v)

    def round(self, decimals: int = 0) -> "Value":
        """Half to even, as Polars' default (and Python's round)."""
        return self if self.v is None else Value(float(round(self.v, decimals)))

    def replace_strict(self, mapping: dict, default=None, return_dtype=None) -> "Value":
        return Value(mapping.get(self.v, default))

    @property
    def dt(self) -> "Value":
        return self

    def total_days(self) -> "Value":
        return Value(None if self.v is None else self.v.days)


class _When:
    """`ops.when(test)` (or `….when(test)` after a then): waits for its `then`."""

    __slots__ = ("done", "value", "test")

    def __init__(self, done: bool, value, test):
        self.done, self.value, self.test = done, value, test

    def then(self, value) -> "_Then":
        if self.done:
            return _Then(True, self.value)
        if _raw(self.test) is True:
            return _Then(True, _raw(value() if callable(value) else value))
        return _Then(False, None)


class _Then(Value):
    """A when/then chain so far: its value (null while no test has held), open for more."""

    __slots__ = ("done",)

    def __init__(self, done: bool, value):
        super().__init__(value if done else None)
        self.done = done

    def when(self, test) -> _When:
        return _When(self.done, self.v, test)

    def otherwise(self, value) -> Value:
        return Value(self.v if self.done else _raw(value))


class RowOps:
    """The `ops` of one case: `col(name)` is its value (a KeyError for a column the row lacks)."""

    __slots__ = ("values",)

    def __init__(self, values: dict):
        self.values = values

    def col(self, name: str) -> Value:
        return Value(self.values[name])

    @staticmethod
    def lit(value, dtype=None) -> Value:
        return Value(_raw(value))

    @staticmethod
    def when(test) -> _When:
        return _When(False, None, test)

    @staticmethod
    def deferred(make):
        """A rule worked out only when a when-test holds for it (`then` calls it): a row needs the
        formula of its own case type only."""
        return make

    @staticmethod
    def coalesce(*values) -> Value:
        return Value(next((v for v in map(_raw, values) if v is not None), None))

    @staticmethod
    def min_horizontal(*values) -> Value:
        present = [v for v in map(_raw, values) if v is not None]
        return Value(min(present) if present else None)


def mul_div_half_up(a, b, d) -> int | None:
    """a × b ÷ d half up, exactly: the compiled kernel's `mul_div_half_up` on one row (null when an
    input is null or negative, d ≤ 0, or the result does not fit in 63 bits)."""
    if a is None or b is None or d is None or a < 0 or b < 0 or d <= 0:
        return None
    quotient, rest = divmod(a * b, d)
    if 2 * rest >= d:
        quotient += 1
    return quotient if quotient < 1 << 63 else None


def compare_products(a, b, c, d) -> int | None:
    """The sign of a × b − c × d (−1, 0, 1), exactly; null when an input is null or negative (the kernel's `compare_products`)."""
    if a is None or b is None or c is None or d is None or a < 0 or b < 0 or c < 0 or d < 0:
        return None
    left, right = a * b, c * d
    return (left > right) - (left < right)
