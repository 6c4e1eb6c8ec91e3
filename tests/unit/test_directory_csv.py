"""Directory CSV parsing: all rows or none, every fault with its line number."""

from __future__ import annotations

import pytest

from contracts import ConfigError
from contracts.directory import DirectoryEntry
from contracts.tenants import parse_tenants
from deploy.directory import DirectoryError, parse_directory_csv

TENANTS = parse_tenants(
    """
[[tenant]]
id = "lps-xmo"
role = "lps"

[[tenant]]
id = "lps-novax"
role = "lps"

[[tenant]]
id = "kommune-0101"
role = "producer"
"""
)


def test_good_file_with_optional_columns_and_blank_lines() -> None:
    text = (
        "sor,lps,name,ydernummer\n"
        "123456789012345,lps-xmo,Lægerne i Byen,012345\n"
        "\n"
        "12345678901,lps-novax,,\n"
        '223456789012345,lps-xmo,"Klinik, Nord",\n'
    )
    entries = parse_directory_csv(text, TENANTS)
    assert entries == [
        DirectoryEntry(sor="123456789012345", lps="lps-xmo", name="Lægerne i Byen", ydernummer="012345"),
        DirectoryEntry(sor="12345678901", lps="lps-novax", name=None, ydernummer=None),
        DirectoryEntry(sor="223456789012345", lps="lps-xmo", name="Klinik, Nord", ydernummer=None),
    ]
    assert entries[0].ydernummer == "012345"  # leading zero kept


def test_two_column_file() -> None:
    assert parse_directory_csv("sor,lps\n123456789012345,lps-xmo\n") == [
        DirectoryEntry(sor="123456789012345", lps="lps-xmo", name=None, ydernummer=None)
    ]


def test_every_bad_row_is_reported_with_its_line_number() -> None:
    text = (
        "sor,lps,name,ydernummer\n"  # 1
        "123456789012345,lps-xmo,A,1\n"  # 2 good
        "0101901234,lps-xmo,B,2\n"  # 3 too short (and CPR-shaped)
        "123456789012346,Not_Valid,C,3\n"  # 4 bad lps id
        "123456789012347,lps-xmo,D,12a\n"  # 5 bad ydernummer
        "123456789012345,lps-novax,E,4\n"  # 6 duplicate of line 2
        "123456789012348\n"  # 7 too few columns
        "123456789012349,kommune-0101\n"  # 8 not an lps
        "123456789012350,lps-ghost\n"  # 9 unknown tenant
        "123456789012351,lps-xmo,F,5,extra\n"  # 10 too many columns
    )
    with pytest.raises(DirectoryError) as caught:
        parse_directory_csv(text, TENANTS)
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [f"line {n}" for n in (3, 4, 5, 6, 7, 8, 9, 10)]
    assert "sor" in problems[0]
    assert "lps" in problems[1]
    assert "ydernummer" in problems[2]
    assert "already listed on line 2" in problems[3]
    assert "not an lps tenant" in problems[5]
    assert "not in the tenants file" in problems[6]
    assert isinstance(caught.value, ConfigError)
    assert "0101901234" not in str(caught.value)
    assert "nothing loaded" in str(caught.value)


def test_without_tenants_any_valid_lps_id_is_accepted() -> None:
    assert parse_directory_csv("sor,lps\n123456789012345,lps-ghost\n")[0].lps == "lps-ghost"


@pytest.mark.parametrize(
    "text",
    ["", "123456789012345,lps-xmo\n", "lps,sor\n123456789012345,lps-xmo\n", "sor,lps,ydernummer\n"],
)
def test_missing_or_wrong_header_is_line_1(text: str) -> None:
    with pytest.raises(DirectoryError, match="line 1"):
        parse_directory_csv(text)


def test_header_is_case_and_space_tolerant() -> None:
    assert len(parse_directory_csv(" SOR , LPS \n123456789012345,lps-xmo\n")) == 1
