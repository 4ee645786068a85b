"""An import file as a header and a stream of rows, never read whole into memory.

CSV: UTF-8 with or without a BOM; UTF-16 with a BOM (Excel's "Unicode text"); cp1251 when the text is not UTF-8
(Russian Excel's CSV) unless an encoding is given. The separator (comma, semicolon or tab) is sniffed from the first
lines. XLSX: the first sheet, read with openpyxl in read-only mode (row by row from the zipped XML).

Every way a file can be unreadable is a specific `ImportFileError` (message codes `import.*`,
docs/message-codes-imports.md): empty, a ZIP or other binary renamed .csv, an XLSX that is not a ZIP, an unknown
encoding, text that is not in the encoding, a line the CSV reader cannot split, no header, repeated column names.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from kartoteka.imports.errors import ImportFileError
from kartoteka.messages import Message

FORMATS = ("csv", "xlsx")
SAMPLE_BYTES = 64 * 1024  # what the encoding and the separator are told from
SEPARATORS = (",", ";", "\t")
MAX_COLUMNS = 500
MAX_LINE_BYTES = 1024 * 1024  # a longer line is refused: the file is read a line at a time
_ZIP = b"PK\x03\x04"


def format_of(file_name: str, given: str | None = None) -> str:
    """csv or xlsx: `given`, else by the file name's extension (ImportFileError for any other)."""
    kind = (given or Path(file_name).suffix.lstrip(".")).lower()
    if kind in ("txt", "tsv"):
        kind = "csv"
    if kind not in FORMATS:
        raise ImportFileError(Message("import.format_unknown", "'{name}' is neither a CSV nor an XLSX file; save it "
                                      "as one of them (.csv or .xlsx).", name=file_name[:100]))
    return kind


@dataclass
class Table:
    """An opened file: its column names and its data rows as (row number in the file, cells as text)."""

    format: str
    header: list[str]
    rows: Iterator[tuple[int, list[str]]]
    encoding: str | None = None
    separator: str | None = None
    size: int = 0
    _position: Any = field(default=None, repr=False)
    _close: Any = field(default=None, repr=False)

    def fraction(self) -> float:
        """How much of the file has been read, 0 to 1 (by bytes for CSV, by rows for XLSX)."""
        return min(1.0, max(0.0, self._position())) if self._position is not None else 0.0

    def close(self) -> None:
        """Close the file."""
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_table(path: Path, file_name: str | None = None, *, format: str | None = None,
               encoding: str | None = None) -> Table:
    """The table in the file at `path` (`file_name`: the name the user gave it, for its extension and messages)."""
    name = file_name or path.name
    kind = format_of(name, format)
    size = path.stat().st_size
    if size == 0:
        raise ImportFileError(Message("import.empty_file", "'{name}' is empty.", name=name[:100]))
    if kind == "xlsx":
        return _open_xlsx(path, name, size)
    return _open_csv(path, name, size, encoding)


# --- CSV ------------------------------------------------------------------------------------------------------------


def _encoding_of(sample: bytes, given: str | None, name: str) -> str:
    if given:
        try:
            return codecs.lookup(given).name
        except LookupError:
            raise ImportFileError(Message("import.encoding_unknown", "'{encoding}' is not an encoding Python knows; "
                                          "try utf-8 or cp1251.", encoding=given[:40])) from None
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if sample.startswith(_ZIP):
        raise ImportFileError(Message("import.csv_is_zip", "'{name}' is a ZIP archive (an Excel workbook?), not a "
                                      "CSV text: import it as .xlsx, or save it from Excel as CSV.", name=name[:100]))
    if b"\x00" in sample:
        raise ImportFileError(Message("import.csv_binary", "'{name}' is not a text file (it holds binary data); "
                                      "import a CSV or an XLSX file.", name=name[:100]))
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)  # a character cut at the end is fine
    except UnicodeDecodeError:
        return "cp1251"  # Russian Windows and Excel's "CSV (разделители — запятые)"
    return "utf-8"


def _separator_of(lines: list[str]) -> str:
    """The separator that splits the first lines into the most columns, alike in each line."""
    best, best_score = ",", (-1, -1)
    for candidate in SEPARATORS:
        try:
            counts = [len(row) for row in csv.reader(lines, delimiter=candidate)]
        except csv.Error:
            continue
        if not counts:
            continue
        steady = sum(1 for c in counts if c == counts[0])
        score = (counts[0] if counts[0] > 1 else 0, steady)
        if score > best_score:
            best, best_score = candidate, score
    return best


def _open_csv(path: Path, name: str, size: int, given: str | None) -> Table:
    binary = path.open("rb")
    try:
        sample = binary.read(SAMPLE_BYTES)
        encoding = _encoding_of(sample, given, name)
        text_sample = sample.decode(encoding, errors="replace")
        first_lines = text_sample.splitlines()[:6]
        if len(sample) == SAMPLE_BYTES and len(first_lines) > 1:
            first_lines = first_lines[:-1]  # the last line of a cut sample may be cut too
        separator = _separator_of(first_lines)
        binary.seek(0)
    except BaseException:
        binary.close()
        raise
    if encoding.startswith("utf-16"):  # its line breaks are two bytes: decoded as a stream, which owns the file
        text = io.TextIOWrapper(binary, encoding=encoding, newline="")
        lines, close = iter(lambda: _read_line(text, name), ""), text.close
    else:
        lines, close = _decoded_lines(binary, encoding, name), binary.close
    reader = csv.reader(lines, delimiter=separator)
    line = [0]

    def read_row() -> tuple[int, list[str]] | None:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            raise ImportFileError(Message("import.csv_broken", "Line {line} of '{name}' cannot be read as CSV: "
                                          "{reason}.", line=start, name=name[:100], reason=str(exc)[:200])) from None
        line[0] = reader.line_num
        return start, row

    try:
        header = _header(read_row, name)
    except BaseException:
        close()
        raise

    def rows() -> Iterator[tuple[int, list[str]]]:
        while (found := read_row()) is not None:
            number, cells = found
            if any(cell.strip() for cell in cells):  # blank lines (Excel leaves some at the end) are no rows
                yield number, cells

    return Table("csv", header, rows(), encoding, separator, size,
                 _position=lambda: binary.tell() / size if not binary.closed else 1.0, _close=close)


def _decoded_lines(binary: IO[bytes], encoding: str, name: str) -> Iterator[str]:
    """The file's lines decoded one by one (so that text not in `encoding` is an ImportFileError naming its line, and
    a line longer than MAX_LINE_BYTES one too: never a whole file read as one line)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    number = 0
    while True:
        raw = binary.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise ImportFileError(Message("import.line_too_long", "Line {line} of '{name}' is longer than {limit} "
                                          "bytes: this is not a table of records.", line=number, name=name[:100],
                                          limit=MAX_LINE_BYTES))
        try:
            yield decoder.decode(raw)
        except UnicodeDecodeError:
            raise ImportFileError(Message(
                "import.encoding_wrong", "Line {line} of '{name}' is not {encoding} text; give the file's encoding "
                "(for example cp1251 or utf-8).", line=number, name=name[:100],
                encoding=encoding.replace("_", "-"))) from None


def _read_line(stream: IO[str], name: str) -> str:
    try:
        return stream.readline(MAX_LINE_BYTES)
    except UnicodeDecodeError:
        raise ImportFileError(Message("import.encoding_wrong", "Line {line} of '{name}' is not {encoding} text; give "
                                      "the file's encoding (for example cp1251 or utf-8).", line="?",
                                      name=name[:100], encoding="utf-16")) from None


def _header(read_row: Any, name: str) -> list[str]:
    while True:
        found = read_row()
        if found is None:
            raise ImportFileError(Message("import.no_header", "'{name}' has no header row: its first row must name "
                                          "the columns.", name=name[:100]))
        _number, cells = found
        if any(str(cell).strip() for cell in cells):
            break
    header = [str(cell).strip() for cell in cells]
    while header and not header[-1]:
        header.pop()  # empty columns to the right of the table
    if len(header) > MAX_COLUMNS:
        raise ImportFileError(Message("import.too_many_columns", "'{name}' has {count} columns; at most {limit} can "
                                      "be imported.", name=name[:100], count=len(header), limit=MAX_COLUMNS))
    seen: dict[str, int] = {}
    for position, column in enumerate(header, start=1):
        if not column:
            raise ImportFileError(Message("import.column_unnamed", "Column {position} of '{name}' has no name in the "
                                          "header row.", position=position, name=name[:100]))
        if column.casefold() in seen:
            raise ImportFileError(Message("import.column_repeated", "Column '{column}' appears twice in the header "
                                          "(columns {first} and {second}).", column=column[:60],
                                          first=seen[column.casefold()], second=position))
        seen[column.casefold()] = position
    return header


# --- XLSX -----------------------------------------------------------------------------------------------------------


def _open_xlsx(path: Path, name: str, size: int) -> Table:
    if not zipfile.is_zipfile(path):
        with path.open("rb") as probe:
            head = probe.read(512)
        if b"\x00" not in head and head.strip():
            raise ImportFileError(Message("import.xlsx_is_text", "'{name}' is not an XLSX file but a text (a CSV "
                                          "renamed .xlsx?): import it as .csv.", name=name[:100]))
        raise ImportFileError(Message("import.xlsx_not_zip", "'{name}' is not an XLSX file (an Excel workbook is a "
                                      "ZIP archive; this is not one).", name=name[:100]))
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
        sheet = workbook.worksheets[0]
    except Exception as exc:  # openpyxl raises many kinds on a broken workbook (KeyError, InvalidFileException...)
        raise ImportFileError(Message("import.xlsx_broken", "'{name}' cannot be read as an Excel workbook: "
                                      "{reason}.", name=name[:100], reason=(str(exc) or type(exc).__name__)[:200])) \
            from None
    total = sheet.max_row or 0
    done = [0]
    values = sheet.iter_rows(values_only=True)

    def read_row() -> tuple[int, list[str]] | None:
        try:
            row = next(values)
        except StopIteration:
            return None
        except Exception as exc:
            raise ImportFileError(Message("import.xlsx_broken", "'{name}' cannot be read as an Excel workbook: "
                                          "{reason}.", name=name[:100],
                                          reason=(str(exc) or type(exc).__name__)[:200])) from None
        done[0] += 1
        return done[0], [cell_text(v) for v in row]

    try:
        header = _header(read_row, name)
    except BaseException:
        workbook.close()
        raise

    def rows() -> Iterator[tuple[int, list[str]]]:
        while (found := read_row()) is not None:
            if any(cell.strip() for cell in found[1]):
                yield found

    return Table("xlsx", header, rows(), None, None, size,
                 _position=lambda: done[0] / total if total else 0.0, _close=workbook.close)


def cell_text(value: Any) -> str:
    """A spreadsheet cell's value as the text a field's parser reads: numbers in full without a float's noise
    (0.1 stays 0.1, 3.0 is 3), dates in ISO (a midnight without a time is a date), booleans as true or false."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        number = Decimal(repr(value))
        return format(number.to_integral_value(), "f") if number == number.to_integral_value() else format(number, "f")
    if isinstance(value, datetime):
        if value.time() == time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def save_upload(stream: IO[bytes], target: Path, limit: int | None = None) -> int:
    """Copy an uploaded file to `target` in chunks; its size (ImportFileError past `limit` bytes)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with target.open("wb") as out:
        while chunk := stream.read(1024 * 1024):
            written += len(chunk)
            if limit is not None and written > limit:
                out.close()
                os.unlink(target)
                raise ImportFileError(Message("import.file_too_large", "The file is larger than {limit} bytes, the "
                                              "most an import takes.", limit=limit))
            out.write(chunk)
    return written
