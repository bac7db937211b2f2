"""read_table on files shaped like the ones users upload (and the real ones, when present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml_core.tables import TableReadError, TableReadOptions, read_table

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

GERMAN_LIKE = (
    b"A11 6 A34 A43 1169 A65 A75 4 A93 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 1\n"
    b"A12 48 A32 A43 5951 A61 A73 2 A92 A101 2 A121 22 A143 A152 1 A173 1 A191 A201 2\n"
    b"A14 12 A34 A46 2096 A61 A74 2 A93 A101 3 A121 49 A143 A152 1 A172 2 A191 A201 1\n"
    b"A11 42 A32 A42 7882 A61 A74 2 A93 A103 4 A122 45 A143 A153 1 A173 2 A191 A201 1\n"
    b"A11 24 A33 A40 4870 A61 A73 3 A93 A101 4 A124 53 A143 A153 2 A173 2 A191 A201 2\n"
)


def _error(data: bytes, **options) -> TableReadError:
    with pytest.raises(TableReadError) as caught:
        read_table(data, **options)
    return caught.value


def test_space_separated_without_header_like_german_data():
    frame, options = read_table(GERMAN_LIKE)
    assert options == TableReadOptions(delimiter=" ", encoding="utf-8", header=False)
    assert frame.shape == (5, 21)
    assert list(frame.columns) == [f"column_{k}" for k in range(1, 22)]
    assert frame["column_1"].tolist() == ["A11", "A12", "A14", "A11", "A11"]
    assert frame["column_2"].dtype == np.int64
    assert frame["column_21"].tolist() == [1, 2, 1, 1, 2]
    assert list(frame.index) == [0, 1, 2, 3, 4]


def test_crlf_without_final_newline_like_pima():
    data = (
        b"pregnants,Plasma_glucose,BMI,Age,Target\r\n"
        b"6,148,33.6,50,1\r\n1,85,26.6,31,0\r\n8,183,23.3,32,1"
    )
    frame, options = read_table(data)
    assert options.header is True and options.delimiter == ","
    assert frame.shape == (3, 5)
    assert frame["Target"].tolist() == [1, 0, 1]  # the last row, without newline, is kept
    assert frame["BMI"].dtype == np.float64


def test_day_first_dates_stay_text_like_walmart():
    data = (
        b"Store,Date,Weekly_Sales,Holiday_Flag\r\n"
        b"1,05/02/10,1643690.9,0\r\n1,12/02/10,1641957.44,1"
    )
    frame, _ = read_table(data)
    assert frame["Date"].tolist() == ["05/02/10", "12/02/10"]
    assert frame["Weekly_Sales"].iloc[1] == pytest.approx(1641957.44)


def test_semicolons_and_quotes_like_student():
    data = (
        b'school;sex;age;Mjob;G1;G3\n'
        b'"GP";"F";18;"at_home";"0";11\n'
        b'"GP";"M";17;"other";"9";12\n'
        b'"MS";"F";16;"services";"12";14\n'
    )
    frame, options = read_table(data)
    assert options.delimiter == ";" and options.header
    assert frame["sex"].tolist() == ["F", "M", "F"]
    assert frame["G1"].tolist() == [0, 9, 12]  # quoted numbers are numbers
    assert frame["age"].dtype == np.int64


def test_bom_does_not_reach_the_first_column_name_like_ai4i():
    data = (
        "UDI,Product ID,Type,Air temperature [K],Machine_failure\r\n"
        "1,M14860,M,298.1,0\r\n2,L47181,L,298.2,0\r\n3,L47182,L,298.1,1\r\n"
    ).encode("utf-8-sig")
    frame, options = read_table(data)
    assert list(frame.columns)[0] == "UDI"
    assert options.encoding == "utf-8-sig"
    assert frame["Air temperature [K]"].tolist() == [298.1, 298.2, 298.1]


def test_latin1_fallback():
    data = "name;city;score\nMüller;Zürich;3\nNiño;São Paulo;4\n".encode("latin-1")
    frame, options = read_table(data)
    assert frame["name"].tolist() == ["Müller", "Niño"]
    assert frame["city"].tolist() == ["Zürich", "São Paulo"]
    assert options.encoding in ("cp1252", "latin-1")


def test_explicit_encoding_that_does_not_fit_is_undecodable():
    data = "name,score\nMüller,3\n".encode("latin-1")
    error = _error(data, encoding="utf-8")
    assert error.code == "undecodable"
    assert "utf-8" in error.message
    frame, _ = read_table(data, encoding="latin-1")
    assert frame["name"].tolist() == ["Müller"]


@pytest.mark.parametrize("sep", ["\t", "|"])
def test_tab_and_pipe_separated(sep):
    lines = ["id,name", "1,Smith, John", "2,Doe, Jane"]  # commas inside values
    data = "\n".join(line.replace(",", sep, 1) for line in lines).encode()
    frame, options = read_table(data)
    assert options.delimiter == sep
    assert frame["name"].tolist() == ["Smith, John", "Doe, Jane"]


def test_strings_stripped_and_missing_markers():
    data = b"a, b ,c\n x ,1, NA\ny , ,?\n z,3,4\n"
    frame, _ = read_table(data)
    assert list(frame.columns) == ["a", "b", "c"]
    assert frame["a"].tolist() == ["x", "y", "z"]
    assert frame["b"].dtype == np.float64 and np.isnan(frame["b"].iloc[1])
    assert frame["c"].isna().tolist() == [True, True, False]


def test_explicit_sep_and_header_overrides():
    data = b"1;2\n3;4\n5;6\n"
    frame, options = read_table(data)
    assert options.header is False and list(frame.columns) == ["column_1", "column_2"]
    forced, _ = read_table(data, header=True)
    assert list(forced.columns) == ["1", "2"] and len(forced) == 2
    one_column, options = read_table(b"a:b\nc:d\n", sep=",")
    assert options.delimiter == "," and list(one_column.columns) == ["a:b"]
    # A forced separator that leaves one column while another splits every line is refused.
    wrong = _error(b"a;b\nc;d\n", sep=",")
    assert wrong.code == "wrong_delimiter" and "choose ';'" in wrong.message
    tabbed, options = read_table(b"x\ty\n1\t2\n", sep="tab")
    assert options.delimiter == "\t" and tabbed["y"].tolist() == [2]


def test_options_read_the_same_table_again():
    data = "a|b\r\n1|Müller\r\n".encode("cp1252")
    frame, options = read_table(data)
    again, _ = read_table(
        data, sep=options.delimiter, header=options.header, encoding=options.encoding
    )
    assert again.equals(frame)
    assert options.to_dict() == {
        "delimiter": "|", "encoding": options.encoding, "header": True, "notes": [],
    }


def test_header_detection_text_over_numbers_and_coded_values():
    assert read_table(b"age,income\n30,100\n40,200\n")[1].header is True
    assert read_table(b"30,100\n40,200\n50,300\n")[1].header is False
    # Coded categories only: the first row recurs / has the shape of its columns.
    assert read_table(b"A11,A201\nA12,A202\nA11,A201\n")[1].header is False
    assert read_table(b"status,foreign\nA11,A201\nA12,A202\n")[1].header is True
    # A stray text value in the first data row does not make it a header.
    assert read_table(b"?,1,2,3\n5,6,7,8\n9,10,11,12\n")[1].header is False


def test_empty_file():
    for data in (b"", b"  \n\r\n"):
        assert _error(data).code == "empty"


def test_header_only_has_no_rows():
    error = _error(b"age,income,target\r\n")
    assert error.code == "no_rows"


def test_binary_content():
    assert _error(b"a,b\n1,\x00\x01\x02\n").code == "binary"
    assert _error(b"PK\x03\x04rest of a zip").code == "binary"


def test_ragged_rows_name_their_lines():
    data = b"a,b,c\n1,2,3\n4,5\n6,7,8\n9,10,11,12\n"
    error = _error(data)
    assert error.code == "ragged"
    assert "line 3 has 2" in error.message and "line 5 has 4" in error.message


@pytest.mark.parametrize("tail", [b"4,5,6,7\n8,9\n", b"4,5,6,\n8,9", b"4,5\n6,7,8,9\n"])
def test_ragged_rows_that_even_out_are_still_named(tail):
    # Past the first lines, a long and a short line add up to whole rows of separators:
    # the reader leaves long lines to the parser, and must still name both.
    data = b"a,b,c\n" + b"1,2,3\n" * 300 + tail
    error = _error(data)
    assert error.code == "ragged"
    assert "line 302 has" in error.message and "line 303 has" in error.message


def test_a_short_first_data_line_is_ragged_even_when_a_long_one_evens_it_out():
    error = _error(b"a,b,c\n1,2,3,4\n5,6\n7,8,9\n")
    assert error.code == "ragged"
    assert "line 2 has 4" in error.message and "line 3 has 2" in error.message


def test_duplicate_column_names_are_refused():
    error = _error(b"age,age,x\nfoo,bar,baz\nqux,quux,corge\n", header=True)
    assert error.code == "duplicate_columns"
    assert "'age'" in error.message


def test_blank_column_names_are_named_or_dropped():
    frame, options = read_table(b"a,,c,\n1,2,3,\n4,5,6,\n")
    assert list(frame.columns) == ["a", "column_2", "c"]
    assert frame["column_2"].tolist() == [2, 5]
    assert len(options.notes) == 2


def test_path_source(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"x,y\n1,2\n")
    frame, _ = read_table(path)
    assert frame.to_dict("list") == {"x": [1], "y": [2]}


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")
@pytest.mark.parametrize(
    ("name", "rows", "columns", "first_column"),
    [
        ("german.data", 1000, 21, "column_1"),
        ("pima-indians-diabetes.csv", 768, 9, "pregnants"),
        ("Walmart.csv", 6435, 8, "Store"),
        ("student-por.csv", 649, 33, "school"),
        ("ai4i2020.csv", 10000, 14, "UDI"),
    ],
)
def test_real_files(name, rows, columns, first_column):
    frame, _ = read_table(SHARED_DATA / name)
    assert frame.shape == (rows, columns)
    assert frame.columns[0] == first_column
    assert list(frame.index) == list(range(rows))
