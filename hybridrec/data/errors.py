"""One error type for bad input: it always names the place and what was expected."""
from __future__ import annotations

import functools
from os import PathLike


class DataError(ValueError):
    """Bad input data, with its place.

    Renders as ``ratings.csv line 18 (row 17), column 'rating': expected a number, got
    'five'``: the line an editor shows (the header is line 1), and the data row.

    Args:
        path: the file (or a short name of the source when there is no file).
        expected: what was expected there, and what was found.
        row: 1-based data row (header excluded) for tables, when known.
        line: 1-based line in the file, when known (for a table, where the row starts).
        field: the column or field name, when known.
        field_kind: what ``field`` is, as the message names it (default: ``"column"``; e.g.
            ``"tensor"`` in a weights file, ``"key"`` in a JSON file).
    """

    def __init__(
        self,
        path: str | PathLike[str],
        expected: str,
        *,
        row: int | None = None,
        line: int | None = None,
        field: str | None = None,
        field_kind: str = "column",
    ) -> None:
        self.path = str(path)
        self.expected = expected
        self.row = row
        self.line = line
        self.field = field
        self.field_kind = field_kind
        place = self.path
        if line is not None and row is not None:  # a table: the editor's line, the data row
            place += f" line {line} (row {row})"
        elif row is not None:
            place += f" row {row}"
        elif line is not None:
            place += f" line {line}"
        if field is not None:
            place += (f"{',' if row is not None or line is not None else ''} "
                      f"{field_kind} {field!r}")
        super().__init__(f"{place}: {expected}")

    def __reduce__(self):  # noqa: ANN204
        # Picklable with its keywords, so that an error raised in a worker process (the
        # train CLI's baselines) arrives whole.
        keywords = {"row": self.row, "line": self.line, "field": self.field,
                    "field_kind": self.field_kind}
        return functools.partial(type(self), **keywords), (self.path, self.expected)
