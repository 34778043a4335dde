"""One error type for bad input: it always names the place and what was expected."""
from __future__ import annotations

from os import PathLike


class DataError(ValueError):
    """Bad input data, with its place.

    Renders as ``ratings.csv row 17, column 'rating': expected a number, got 'five'``.

    Args:
        path: the file (or a short name of the source when there is no file).
        expected: what was expected there, and what was found.
        row: 1-based data row (header excluded) for tables, when known.
        line: 1-based line in the file (for RDF and other text formats), when known.
        field: the column or field name, when known.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        expected: str,
        *,
        row: int | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.expected = expected
        self.row = row
        self.line = line
        self.field = field
        place = self.path
        if row is not None:
            place += f" row {row}"
        if line is not None:
            place += f" line {line}"
        if field is not None:
            place += f"{',' if row is not None or line is not None else ''} column {field!r}"
        super().__init__(f"{place}: {expected}")
