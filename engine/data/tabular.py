"""Tabular data from CSV files, read with the standard-library ``csv`` module."""
import csv
import io

import numpy as np

from ._files import read_bytes
from .errors import DataError


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_rows(path, delimiter):
    """Return ``[(line_number, cells), ...]`` for the non-blank rows of the file."""
    raw, _ = read_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); expected a UTF-8 CSV") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    try:
        for cells in reader:
            if cells and any(c.strip() for c in cells):
                rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: no rows (the file holds only blank lines); expected CSV data")
    return rows


def _encode_labels(values):
    """Map label strings to ints 0..K-1; classes are sorted numerically when every label is a number."""
    for convert in (int, float):
        try:
            typed = [convert(v) for v in values]
        except ValueError:
            continue
        break
    else:
        typed = list(values)
    classes = sorted(set(typed))
    index = {c: i for i, c in enumerate(classes)}
    return np.fromiter((index[v] for v in typed), dtype=np.int64, count=len(typed)), classes


def load_csv(path, label_column=-1, header="infer", delimiter=","):
    """Load a CSV table of numeric features and one label column.

    Args:
        path: the CSV file (UTF-8, an optional BOM is ignored; gzip is detected from the content). Blank lines are
            skipped.
        label_column: index of the label column (negative counts from the end; default the last column) or its
            name, which requires a header row.
        header: ``True`` (the first row names the columns), ``False`` (no header) or ``"infer"``: the first row is
            a header when a feature cell in it is not a number, or when its label cell is not a number while
            every later label is; a named ``label_column`` implies a header.
        delimiter: the field separator, passed to :func:`csv.reader`.

    Returns:
        ``(x, y, classes)``: ``x`` float32 of shape ``(N, F)`` holding the other columns in file order, ``y``
        int64 ``(N,)`` with values 0..K-1, and ``classes`` the list of K distinct labels such that
        ``classes[y[i]]`` is row ``i``'s label. Classes are ints (or floats) sorted numerically when every label
        parses as one, otherwise strings sorted lexicographically.

    Raises:
        DataError: the file is missing or empty, has no data rows, rows of different lengths (ragged), a feature
            value that is not a number (the message gives row, line and column), an empty label, a label column
            name that is not in the header or an index out of range.
        ValueError: ``header`` is not ``True``, ``False`` or ``"infer"``, or a named label column with
            ``header=False``.
    """
    if header not in (True, False, "infer"):
        raise ValueError(f"header must be True, False or 'infer', got {header!r}")
    if isinstance(label_column, str) and header is False:
        raise ValueError(f"label_column={label_column!r} is a name, which needs a header row (header=False given)")
    name = str(path)
    rows = _read_rows(path, delimiter)
    first_line, first = rows[0]
    ncols = len(first)
    for line, cells in rows[1:]:
        if len(cells) != ncols:
            raise DataError(
                f"{name}: line {line} has {len(cells)} columns, expected {ncols} like line {first_line} "
                "(ragged rows)"
            )
    if ncols < 2:
        raise DataError(f"{name}: {ncols} column(s), expected at least one feature column and a label column")

    names = [c.strip() for c in first]
    if isinstance(label_column, str):
        if label_column not in names:
            raise DataError(f"{name}: no column named {label_column!r}; header has {', '.join(map(repr, names))}")
        label = names.index(label_column)
        has_header = True
    else:
        label = int(label_column)
        if not -ncols <= label < ncols:
            raise DataError(f"{name}: label_column {label_column} is out of range for {ncols} columns")
        label %= ncols
        has_header = header
    features = [j for j in range(ncols) if j != label]

    if has_header == "infer":
        has_header = any(not _is_number(first[j]) for j in features) or (
            not _is_number(first[label]) and len(rows) > 1 and all(_is_number(c[label]) for _, c in rows[1:])
        )
    if not has_header:
        names = [f"column {j + 1}" for j in range(ncols)]
    data = rows[1:] if has_header else rows
    if not data:
        raise DataError(f"{name}: only a header row, expected data rows after it")

    x = np.empty((len(data), len(features)), dtype=np.float32)
    labels = []
    for i, (line, cells) in enumerate(data):
        for k, j in enumerate(features):
            cell = cells[j]
            try:
                x[i, k] = float(cell)
            except ValueError:
                what = "is empty" if not cell.strip() else f"is {cell!r}, not a number"
                raise DataError(
                    f"{name}: row {i + 1} (line {line}), column {j + 1} ({names[j]!r}) {what}; "
                    "feature columns must be numeric"
                ) from None
        value = cells[label].strip()
        if not value:
            raise DataError(f"{name}: row {i + 1} (line {line}), label column {label + 1} ({names[label]!r}) is empty")
        labels.append(value)
    y, classes = _encode_labels(labels)
    return x, y, classes
