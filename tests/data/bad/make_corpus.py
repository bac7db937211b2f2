"""The bad-input corpus: hostile or broken files, and what each must produce.

    .venv/bin/python tests/data/bad/make_corpus.py     # rewrites the files and manifest.json

Every case is a finance credit-risk table (``default`` is the target) broken in one way.
``manifest.json`` maps each file to its expected outcome, for every upload path (web form,
REST API, ``manage.py pipeline``):

* ``stage``: ``refused`` (nothing stored: 400 / exit 1), ``read`` (stored as a rejected
  version: the read error), ``mapping`` (rejected when the mapping is confirmed: the
  validation error) or ``accepted`` (validated, with the warning named);
* ``code`` and ``message``: the issue code and a fragment of its message, and where it is:
  ``column`` and ``rows`` (1-based data rows) where they apply;
* ``ui_message``: what the web form says instead, when the form itself refuses first;
* ``options``: reading options the uploader gives (a forced separator);
* ``upload_name``: the file name the client sends (path traversal);
* ``check``: a handling the test asserts beyond the message (escaped HTML, parsed
  numbers, ...);
* ``generated``: files too large to commit (over the size limit, 1 MB line, too many
  columns, compression bombs) are built by the function of that name, here, at test time.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADER = ["applicant_id", "age", "sex", "income", "loan_amount", "duration_months", "purpose",
          "default"]
PURPOSES = ["car", "furniture", "education", "business", "repairs"]
N_ROWS = 60


def base_rows(n: int = N_ROWS, seed: int = 7) -> list[list[str]]:
    """``n`` plausible applications as text cells, the same every time."""
    rng = random.Random(seed)
    rows = []
    for i in range(1, n + 1):
        rows.append([
            f"A{i:04d}", str(rng.randint(19, 70)), rng.choice(["male", "female"]),
            str(rng.randrange(800, 9000, 10)), str(rng.randrange(500, 15000, 50)),
            str(rng.choice([6, 12, 18, 24, 36, 48])), rng.choice(PURPOSES),
            "1" if i % 3 == 0 else "0",
        ])
    return rows


def table(rows: list[list[str]], header: list[str] | None = None, sep: str = ",") -> bytes:
    lines = [sep.join(header or HEADER)] + [sep.join(row) for row in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def column(name: str) -> int:
    return HEADER.index(name)


def with_cells(changes: dict[tuple[int, str], str], rows=None) -> list[list[str]]:
    """Base rows with (1-based data row, column) cells replaced."""
    rows = [list(row) for row in (rows or base_rows())]
    for (row, name), value in changes.items():
        rows[row - 1][column(name)] = value
    return rows


def quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


# --- files built at test time -----------------------------------------------------------


def over_size_limit(limit: int) -> bytes:
    """A valid table one byte over ``limit``."""
    parts, size, seed = [table(base_rows())], 0, 0
    size = len(parts[0])
    while size <= limit:
        seed += 1
        rows = table(base_rows(seed=seed))[len(table([])):]
        parts.append(rows)
        size += len(rows)
    return b"".join(parts)[: limit + 1]


def one_megabyte_line() -> bytes:
    rows = with_cells({(3, "purpose"): "x" * (1024 * 1024)})
    return table(rows)


def too_many_columns(limit: int = 2000) -> bytes:
    header = HEADER + [f"extra_{k}" for k in range(limit + 1 - len(HEADER))]
    rows = [row + ["1"] * (len(header) - len(HEADER)) for row in base_rows()]
    return table(rows, header)


def gzip_bomb(inflated: int = 64 * 1024 * 1024) -> bytes:
    """A .csv that is gzip: ``inflated`` bytes of zeros behind about a thousandth of that."""
    out = io.BytesIO()
    zero = bytes(1024 * 1024)
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as handle:
        for _ in range(inflated // len(zero)):
            handle.write(zero)
    return out.getvalue()


def zip_bomb(inflated: int = 64 * 1024 * 1024) -> bytes:
    out = io.BytesIO()
    zero = bytes(1024 * 1024)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("applications.csv", "w", force_zip64=True) as handle:
            for _ in range(inflated // len(zero)):
                handle.write(zero)
    return out.getvalue()


def gzip_table() -> bytes:
    """The plain table, gzip-compressed (as MIMIC-IV ships its .csv.gz files)."""
    return gzip.compress(table(base_rows()), mtime=0)


def gzip_truncated() -> bytes:
    """A gzip-compressed table cut off before its end."""
    whole = gzip_table()
    return whole[: len(whole) // 2]


GENERATORS = {"over_size_limit", "one_megabyte_line", "too_many_columns", "gzip_bomb",
              "zip_bomb", "gzip_table", "gzip_truncated"}


# --- small files, committed -------------------------------------------------------------


def _xlsx() -> bytes:
    """A minimal real .xlsx workbook holding the first rows of the table."""
    cells = "".join(
        f'<row r="{r}">' + "".join(f'<c t="inlineStr"><is><t>{v}</t></is></c>' for v in row)
        + "</row>" for r, row in enumerate([HEADER, *base_rows()[:5]], start=1))
    parts = {
        "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats'
        '.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"'
        '/></Types>',
        "xl/workbook.xml": '<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats'
        '.org/spreadsheetml/2006/main"><sheets><sheet name="Sheet1" sheetId="1"/></sheets>'
        "</workbook>",
        "xl/worksheets/sheet1.xml": '<?xml version="1.0"?><worksheet xmlns="http://schemas.'
        f'openxmlformats.org/spreadsheetml/2006/main"><sheetData>{cells}</sheetData></worksheet>',
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), text)
    return out.getvalue()


def _zip_of_csv() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("applications.csv", (2024, 1, 1, 0, 0, 0)),
                         table(base_rows()))
    return out.getvalue()


def _mixed_encodings() -> bytes:
    rows = base_rows()
    lines = [",".join(HEADER).encode()]
    for i, row in enumerate(rows, start=1):
        line = ",".join(row)
        if i == 4:
            lines.append(line.replace("A0004", "A0004-Zoë").encode("utf-8"))
        elif i == 9:
            lines.append(line.replace("A0009", "A0009-Müller").encode("cp1252"))
        else:
            lines.append(line.encode())
    return b"\n".join(lines) + b"\n"


def _nul_byte() -> bytes:
    data = table(base_rows())
    lines = data.split(b"\n")
    lines[10] = lines[10].replace(b",", b",\x00", 1)
    return b"\n".join(lines)


def _ragged() -> bytes:
    lines = table(base_rows()).decode().split("\n")
    lines[4] += ",surplus"  # line 5 of the file
    lines[8] = lines[8].rsplit(",", 1)[0]  # line 9
    return "\n".join(lines).encode()


def _unclosed_quote() -> bytes:
    rows = with_cells({(6, "purpose"): '"car'})
    return table(rows)


def _dates() -> bytes:
    formats = ["2024-01-{d:02d}", "{d:02d}/01/2024", "Jan {d}, 2024", "{d}.1.2024"]
    header = HEADER[:-1] + ["application_date", "default"]
    rows = [row[:-1] + [formats[i % 4].format(d=i % 28 + 1), row[-1]]
            for i, row in enumerate(base_rows())]
    rows[0][-2] = "13/01/2024"  # a day above 12 settles day-first
    return table([[quoted(c) if "," in c else c for c in row] for row in rows], header)


def _thousands() -> bytes:
    rows = []
    for row in base_rows():
        row = list(row)
        row[column("income")] = quoted(f"{int(row[column('income')]) * 10:,}")
        row[column("loan_amount")] = quoted(f"{int(row[column('loan_amount')]) * 100:,}.50")
        rows.append(row)
    return table(rows)


def _decimal_comma() -> bytes:
    rows = []
    for row in base_rows():
        row = list(row)
        row[column("income")] = f"{int(row[column('income')])},75"
        rows.append(row)
    return table(rows, sep=";")


def _identifiers() -> bytes:
    header = HEADER[:-1] + ["contact", "mobile", "default"]
    rows = [row[:-1] + [f"person{i}@example.org", f"+44 7700 900{i:03d}", row[-1]]
            for i, row in enumerate(base_rows(), start=1)]
    return table(rows, header)


def _html() -> bytes:
    header = HEADER[:-1] + ["<b>note</b>", "default"]
    payloads = ["<script>alert('pwned')</script>", '<img src=x onerror="alert(1)">',
                "<a href=\"javascript:alert(1)\">click</a>", "</td></tr><tr><td>injected"]
    rows = []
    for i, row in enumerate(base_rows()):
        note = payloads[i % len(payloads)]
        rows.append(row[:-1] + [quoted(note) if '"' in note or "," in note else note, row[-1]])
    return table(rows, header)


FORMULAS = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3+cmd|' /C notepad'!A0", "@SUM(A1:A2)",
            "=HYPERLINK(\"http://example.invalid\",\"x\")"]


def _formulas() -> bytes:
    rows = []
    for i, row in enumerate(base_rows()):
        row = list(row)
        row[column("purpose")] = quoted(FORMULAS[i % len(FORMULAS)])
        rows.append(row)
    return table(rows)


def _rtl_header() -> bytes:
    header = list(HEADER)
    header[column("purpose")] = "\u202eesoprup"  # shows as "purpose" reversed
    header.insert(column("default"), "\u0627\u0644\u062f\u062e\u0644")  # Arabic "income"
    rows = [row[:-1] + [str(int(row[3]) // 2), row[-1]] for row in base_rows()]
    return table(rows, header)


def _homoglyph_duplicate() -> bytes:
    header = list(HEADER)
    header[column("duration_months")] = "\u0430ge"  # Cyrillic a: looks like "age"
    return table(base_rows(), header)


def _homoglyph_target() -> bytes:
    header = list(HEADER)
    header[column("default")] = "d\u0435fault"  # Cyrillic e
    return table(base_rows(), header)


def _small_group() -> bytes:
    return table(with_cells({(5, "sex"): "diverse"}))


def _sql_names() -> bytes:
    header = HEADER[:-1] + ["x'); DROP TABLE ingestion_dataset;--", "default"]
    rows = [row[:-1] + ["1' OR '1'='1", row[-1]] for row in base_rows()]
    return table(rows, header)


# (file, bytes or None when generated, expectations)
CASES: list[tuple[str, bytes | None, dict]] = [
    ("empty.csv", b"", {
        "what": "an empty file", "stage": "read", "code": "empty",
        "message": "The file is empty.", "ui_message": "The submitted file is empty."}),
    ("whitespace_only.csv", b"  \n\r\n\t\n", {
        "what": "only blank lines", "stage": "read", "code": "empty",
        "message": "The file is empty."}),
    ("bom_only.csv", b"\xef\xbb\xbf", {
        "what": "a UTF-8 byte-order mark and nothing else", "stage": "read", "code": "empty",
        "message": "The file is empty."}),
    ("header_only.csv", (",".join(HEADER) + "\r\n").encode(), {
        "what": "a header without data rows", "stage": "read", "code": "no_rows",
        "message": "The file has a header but no data rows."}),
    ("binary_random.csv", random.Random(1).randbytes(4096), {
        "what": "random binary bytes", "stage": "read", "code": "binary",
        "message": "binary data, not a text table"}),
    ("nul_byte.csv", _nul_byte(), {
        "what": "a valid table with one NUL byte", "stage": "read", "code": "binary",
        "message": "a NUL byte on line 11"}),
    ("spreadsheet_renamed.csv", _xlsx(), {
        "what": "an Excel workbook renamed .csv", "stage": "read", "code": "binary",
        "message": "This is an Excel workbook (.xlsx), not a text table"}),
    ("zip_renamed.csv", _zip_of_csv(), {
        "what": "a zip archive renamed .csv", "stage": "read", "code": "binary",
        "message": "This is a zip archive (1 file inside), not a text table"}),
    ("xls_renamed.csv", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), {
        "what": "an Excel 97-2003 workbook renamed .csv", "stage": "read", "code": "binary",
        "message": "This is an Excel 97-2003 workbook (.xls)"}),
    ("pdf_renamed.csv", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", {
        "what": "a PDF renamed .csv", "stage": "read", "code": "binary",
        "message": "This is a PDF document, not a text table"}),
    ("gzip_bomb.csv", None, {
        "what": "a gzip compression bomb (64 MB of zeros) renamed .csv", "stage": "read",
        "code": "compressed_too_large", "generated": "gzip_bomb",
        "message": "gzip-compressed file of 65,250 bytes decompresses to more than"}),
    ("gzip_table.csv.gz", None, {
        "what": "a gzip-compressed table (.csv.gz)", "stage": "accepted", "code": "read_note",
        "generated": "gzip_table", "check": "same_as_plain",
        "message": "The file was gzip-compressed"}),
    ("gzip_truncated.csv.gz", None, {
        "what": "a gzip-compressed table cut off before its end", "stage": "read",
        "code": "binary", "generated": "gzip_truncated",
        "message": "The gzip file is truncated"}),
    ("zip_bomb.csv", None, {
        "what": "a zip compression bomb (64 MB of zeros) renamed .csv", "stage": "read",
        "code": "binary", "generated": "zip_bomb",
        "message": "This is a zip archive (1 file inside)"}),
    ("mixed_encodings.csv", _mixed_encodings(), {
        "what": "UTF-8 rows and one Windows-1252 row", "stage": "accepted",
        "code": "read_note", "check": "accents_kept",
        "message": "1 line (10) is not, as if rows from a Windows export were pasted in"}),
    ("wrong_delimiter.csv", table(base_rows(), sep=";"), {
        "what": "a ';' file uploaded with ',' chosen as the separator", "stage": "read",
        "code": "wrong_delimiter", "options": {"sep": ","},
        "message": "every line has 7 ';': choose ';' as the separator"}),
    ("exotic_delimiter.csv", table(base_rows(), sep="#"), {
        "what": "fields separated by '#'", "stage": "read", "code": "wrong_delimiter",
        "message": "every line has 7 '#': choose '#' as the separator"}),
    ("ragged_rows.csv", _ragged(), {
        "what": "rows with more and fewer fields than the header", "stage": "read",
        "code": "ragged", "message": "line 5 has 9, line 9 has 7"}),
    ("unclosed_quote.csv", _unclosed_quote(), {
        "what": "a quoted value never closed", "stage": "read", "code": "unclosed_quote",
        "message": "starts on line 7 is never closed"}),
    ("duplicate_columns.csv", table(base_rows(), HEADER[:5] + ["age", *HEADER[6:]]), {
        "what": "two columns named 'age'", "stage": "read", "code": "duplicate_columns",
        "message": "repeated: 'age' (columns 2 and 6)"}),
    ("homoglyph_duplicate.csv", _homoglyph_duplicate(), {
        "what": "'age' and a Cyrillic look-alike 'аge'", "stage": "read",
        "code": "duplicate_columns", "message": "only look different: 'age'"}),
    ("too_many_columns.csv", None, {
        "what": "2,001 columns, over the limit of 2,000", "stage": "read",
        "code": "too_many_columns", "generated": "too_many_columns",
        "message": "has 2,001 fields; the limit is 2,000 columns"}),
    ("one_megabyte_line.csv", None, {
        "what": "a line of over 1 MB (one runaway cell)", "stage": "read",
        "code": "cell_too_long", "generated": "one_megabyte_line", "column": "purpose",
        "message": "Row 3 (line 4), column 'purpose' holds a value of 1,048,576 characters"}),
    ("over_size_limit.csv", None, {
        "what": "a valid table one byte over the upload limit", "stage": "refused",
        "code": "file_too_large", "generated": "over_size_limit",
        "message": "the file is larger than the limit"}),
    ("missing_target.csv", table([row[:-1] for row in base_rows()], HEADER[:-1]), {
        "what": "no target column", "stage": "mapping", "code": "missing_target",
        "column": "default", "message": "The target column 'default' is not in the file.",
        "ui_message": "Choose exactly one target column."}),
    ("homoglyph_target.csv", _homoglyph_target(), {
        "what": "the target named with a Cyrillic 'е'", "stage": "mapping",
        "code": "missing_target", "column": "default",
        "message": "Column 'dеfault' looks the same but is spelled with 'е' (U+0435)",
        "ui_message": "mixes alphabets in its name (CYRILLIC, LATIN)"}),
    ("single_class.csv", table(with_cells({(r, "default"): "0" for r in range(1, 61)})), {
        "what": "a target with one class", "stage": "mapping", "code": "single_class",
        "column": "default", "message": "has only one class ('0')"}),
    ("target_not_binary.csv", table(with_cells({(r, "default"): str(r % 3)
                                                for r in range(1, 61)})), {
        "what": "a three-class target for a binary problem", "stage": "mapping",
        "code": "target_not_binary", "column": "default", "message": "has 3 distinct values"}),
    ("nan_target.csv", table(with_cells({(3, "default"): "NaN", (17, "default"): "nan"})), {
        "what": "NaN in the target", "stage": "mapping", "code": "missing_target_values",
        "column": "default", "rows": [3, 17], "message": "missing a value in 2 rows: 3, 17"}),
    ("infinite_values.csv", table(with_cells({(4, "income"): "inf", (9, "income"): "-Infinity",
                                              (12, "income"): "1e999"})), {
        "what": "infinite numbers in a feature", "stage": "mapping", "code": "infinite_values",
        "column": "income", "rows": [4, 9, 12],
        "message": "holds infinite numbers in 3 rows: 4, 9, 12"}),
    ("text_in_numeric.csv", table(with_cells({(5, "loan_amount"): "unknown",
                                              (12, "loan_amount"): "12k"})), {
        "what": "text in a numeric column", "stage": "mapping", "code": "text_in_numeric",
        "column": "loan_amount", "rows": [5, 12], "message": "in 2 rows: 5, 12"}),
    ("too_few_rows.csv", table(base_rows(12)), {
        "what": "12 rows for a problem that needs 50", "stage": "mapping",
        "code": "too_few_rows", "message": "The file has 12 data rows; this problem needs "
                                           "at least 50."}),
    ("blank_column_names.csv", table(base_rows(), ["applicant_id", "", *HEADER[2:]]), {
        "what": "a column without a name", "stage": "accepted", "code": "read_note",
        "message": "Column 2 has no name; called it 'column_2'."}),
    ("all_missing_column.csv", table([row[:-1] + ["", row[-1]] for row in base_rows()],
                                     HEADER[:-1] + ["savings", "default"]), {
        "what": "a column with no values", "stage": "accepted", "code": "constant_column",
        "column": "savings", "message": "Column 'savings' has no values"}),
    ("small_group.csv", _small_group(), {
        "what": "a sensitive group of one row", "stage": "accepted", "code": "small_group",
        "column": "sex", "message": "Group 'diverse' of 'sex' has 1 row;"}),
    ("thousands_separators.csv", _thousands(), {
        "what": "numbers written 12,340 and 1,250,000.50", "stage": "accepted",
        "code": "read_note", "check": "numbers_parsed",
        "message": "Column 'income': numbers written with thousands separator ','"}),
    ("decimal_comma.csv", _decimal_comma(), {
        "what": "a ';' file with decimal commas (1234,75)", "stage": "accepted",
        "code": "read_note", "check": "numbers_parsed",
        "message": "Column 'income': numbers written with no thousands separator and "
                   "decimal mark ','"}),
    ("dates_mixed_formats.csv", _dates(), {
        "what": "dates written four ways", "stage": "accepted", "code": "read_note",
        "check": "dates_iso",
        "message": "Column 'application_date': dates written 4 ways"}),
    ("html_in_cells.csv", _html(), {
        "what": "HTML and script in cells and a header", "stage": "accepted",
        "code": None, "check": "html_escaped", "message": None}),
    ("formula_injection.csv", _formulas(), {
        "what": "spreadsheet formulas in cells (=, +, -, @)", "stage": "accepted",
        "code": None, "check": "formulas_escaped_on_export", "message": None}),
    ("path_traversal.csv", table(base_rows()), {
        "what": "a file named ../../etc/passwd.csv", "stage": "accepted", "code": None,
        "upload_name": "../../etc/passwd.csv", "check": "filename_sanitised",
        "message": None}),
    ("rtl_and_bidi_header.csv", _rtl_header(), {
        "what": "a right-to-left override in one header and an Arabic one", "stage": "accepted",
        "code": "read_note", "message": "removed invisible characters (U+202E)"}),
    ("identifier_columns.csv", _identifiers(), {
        "what": "e-mail addresses and phone numbers", "stage": "accepted",
        "code": "identifier_excluded", "column": "contact", "check": "identifiers_excluded",
        "message": "Column 'contact' looks like a direct identifier: 100% of its values are "
                   "e-mail addresses."}),
    ("sql_in_names.csv", _sql_names(), {
        "what": "SQL injection in a header and cells", "stage": "accepted", "code": None,
        "message": None}),
]


def main() -> None:
    manifest = {}
    for name, data, expected in CASES:
        if data is not None:
            (HERE / name).write_bytes(data)
        elif (HERE / name).exists():
            (HERE / name).unlink()
        manifest[name] = expected
    (HERE / "manifest.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(CASES)} cases, {sum(d is not None for _, d, _ in CASES)} files written")


if __name__ == "__main__":
    main()
