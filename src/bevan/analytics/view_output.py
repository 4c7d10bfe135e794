"""A view's rows written as JSON, NDJSON, CSV or Parquet.

JSON and NDJSON rows are objects keyed by column name, nothing else inside them; CSV
has a header line unless asked not to, empty fields for nulls, and collections and
complex values as JSON text; Parquet columns are typed from the view's column types.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any, BinaryIO

import orjson

from bevan.analytics.view_definition import Column, CompiledView, ViewRunError

FORMATS = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
_ALIASES = {
    "application/json": "json",
    "application/fhir+json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/fhir+ndjson": "ndjson",
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/parquet": "parquet",
}
_INTEGER = frozenset(("integer", "positiveInt", "unsignedInt", "integer64"))


def format_named(name: str) -> str | None:
    """Return the output format a `_format` value names (json, ndjson, csv, parquet)."""
    lowered = name.strip().lower()
    return lowered if lowered in FORMATS else _ALIASES.get(lowered)


def write_rows(
    view: CompiledView,
    rows: Iterable[tuple[Any, ...]],
    fmt: str,
    out: BinaryIO,
    header: bool = True,
) -> int:
    """Write rows to out in fmt; return how many were written."""
    if fmt == "parquet":
        return _write_parquet(view.columns, rows, out)
    names = view.column_names
    count = 0
    if fmt == "csv":
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        writer = csv.writer(text)
        if header:
            writer.writerow(names)
        for row in rows:
            writer.writerow([_csv_field(v) for v in row])
            count += 1
        text.flush()
        text.detach()
        return count
    if fmt == "ndjson":
        for row in rows:
            out.write(orjson.dumps(dict(zip(names, row, strict=True))))
            out.write(b"\n")
            count += 1
        return count
    out.write(b"[")
    for row in rows:
        if count:
            out.write(b",")
        out.write(orjson.dumps(dict(zip(names, row, strict=True))))
        count += 1
    out.write(b"]")
    return count


def _csv_field(value: Any) -> Any:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return value


def _arrow_type(column: Column) -> Any:
    import pyarrow as pa

    kind = column.type or "string"
    if kind in _INTEGER:
        scalar = pa.int64()
    elif kind == "decimal":
        scalar = pa.float64()
    elif kind == "boolean":
        scalar = pa.bool_()
    else:
        scalar = pa.string()
    return pa.list_(scalar) if column.collection else scalar


def _arrow_value(value: Any, column: Column) -> Any:
    kind = column.type or "string"
    if column.collection:
        return None if value is None else [_arrow_scalar(v, kind, column) for v in value]
    return _arrow_scalar(value, kind, column)


def _arrow_scalar(value: Any, kind: str, column: Column) -> Any:
    if value is None:
        return None
    numeric = kind in _INTEGER or kind == "decimal"
    if (numeric and type(value) in (int, float)) or (kind == "boolean" and type(value) is bool):
        return value
    if numeric or kind == "boolean":
        raise ViewRunError(
            f"column {column.name} is declared {kind} but holds {value!r}; "
            "declare its type as it is, or choose another format"
        )
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def _write_parquet(
    columns: tuple[Column, ...], rows: Iterable[tuple[Any, ...]], out: BinaryIO
) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([pa.field(c.name, _arrow_type(c)) for c in columns])
    count = 0
    batch: list[tuple[Any, ...]] = []
    with pq.ParquetWriter(out, schema) as writer:

        def flush() -> None:
            arrays = [
                pa.array([_arrow_value(row[i], c) for row in batch], type=schema.field(i).type)
                for i, c in enumerate(columns)
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            batch.clear()

        for row in rows:
            batch.append(row)
            count += 1
            if len(batch) >= 65_536:
                flush()
        if batch or count == 0:
            flush()
    return count
