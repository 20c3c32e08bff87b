from __future__ import annotations

import random

import pytest

from gateway.services import segments
from gateway.services.segments import analyze, split_parts

GRIN = "\N{GRINNING FACE}"  # outside the BMP: two UTF-16 code units
EXTENSION = "^{}\\[~]|€\f"

CASES = [
    pytest.param("", "GSM-7", 0, 0, id="empty-is-zero-segments"),
    pytest.param("Hello", "GSM-7", 5, 1, id="short-ascii"),
    pytest.param("a" * 160, "GSM-7", 160, 1, id="ascii-160-single"),
    pytest.param("a" * 161, "GSM-7", 161, 2, id="ascii-161-splits"),
    pytest.param("a" * 306, "GSM-7", 306, 2, id="ascii-306-two-full-parts"),
    pytest.param("a" * 307, "GSM-7", 307, 3, id="ascii-307-three-parts"),
    pytest.param("€" * 80, "GSM-7", 160, 1, id="euro-counts-two-80-fits"),
    pytest.param("€" * 81, "GSM-7", 162, 2, id="euro-counts-two-81-splits"),
    pytest.param("a" * 159 + "€", "GSM-7", 161, 2, id="escape-overflows-single"),
    pytest.param("€" * 77 + "abcdef", "GSM-7", 160, 1, id="mixed-escapes-exactly-160"),
    # 306 septets would fit two parts by division, but the escape pair cannot straddle the
    # 153rd septet, so the first part stops at 152 and a third part is needed.
    pytest.param("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3, id="escape-on-153rd-septet"),
    pytest.param("a" * 152 + "€" + "a" * 151, "GSM-7", 305, 2, id="escape-pushed-still-fits"),
    pytest.param(EXTENSION, "GSM-7", 20, 1, id="whole-extension-table"),
    pytest.param("\f", "GSM-7", 2, 1, id="lone-form-feed"),
    pytest.param("line one\nline two\r\nend", "GSM-7", 22, 1, id="newlines-one-septet"),
    pytest.param("£5 $5 ¥5 ¤5 @ 10% § ¿¡ _", "GSM-7", 24, 1, id="gsm-symbols"),
    pytest.param("ΔΦΓΛΩΠΨΣΘΞ", "GSM-7", 10, 1, id="gsm-greek-capitals"),
    pytest.param("ÆæßÉÄÖÑÜäöñüÅåØøÇ", "GSM-7", 17, 1, id="gsm-latin-letters"),
    pytest.param(
        "Voilà, c'est réglé : où et à quelle heure ? Très bien.",
        "GSM-7",
        54,
        1,
        id="french-stays-gsm",
    ),
    pytest.param("ì ò ù è é à", "GSM-7", 11, 1, id="gsm-grave-accents"),
    pytest.param("Ça marche", "GSM-7", 9, 1, id="capital-c-cedilla-is-gsm"),
    pytest.param("ça marche", "UCS-2", 9, 1, id="small-c-cedilla-forces-ucs2"),
    pytest.param("fenêtre", "UCS-2", 7, 1, id="e-circumflex-forces-ucs2"),
    pytest.param("pâte", "UCS-2", 4, 1, id="a-circumflex-forces-ucs2"),
    pytest.param("¿Cómo está?", "UCS-2", 11, 1, id="acute-o-forces-ucs2"),
    pytest.param("\N{GREEK SMALL LETTER ALPHA}", "UCS-2", 1, 1, id="greek-small-forces-ucs2"),
    pytest.param("`code`", "UCS-2", 6, 1, id="backtick-forces-ucs2"),
    pytest.param("ê" * 70, "UCS-2", 70, 1, id="ucs2-70-single"),
    pytest.param("ê" * 71, "UCS-2", 71, 2, id="ucs2-71-splits"),
    pytest.param("ê" * 134, "UCS-2", 134, 2, id="ucs2-134-two-full-parts"),
    pytest.param("ê" * 135, "UCS-2", 135, 3, id="ucs2-135-three-parts"),
    pytest.param("€" * 70 + "ê", "UCS-2", 71, 2, id="euro-counts-one-in-ucs2"),
    pytest.param(GRIN * 35, "UCS-2", 70, 1, id="emoji-35-fit"),
    pytest.param(GRIN * 36, "UCS-2", 72, 2, id="emoji-36-split"),
    pytest.param("ê" * 69 + GRIN, "UCS-2", 71, 2, id="emoji-overflows-single"),
    # Same shape as the GSM-7 escape case: the pair cannot straddle the 67th unit.
    pytest.param("ê" * 66 + GRIN + "ê" * 66, "UCS-2", 134, 3, id="emoji-straddles-67"),
    pytest.param("a" * 100 + GRIN, "UCS-2", 102, 2, id="one-emoji-turns-ascii-ucs2"),
]


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), CASES)
def test_analyze(text: str, encoding: str, units: int, segments: int) -> None:
    info = analyze(text)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), CASES)
def test_split_parts_rejoin_and_respect_capacity(
    text: str, encoding: str, units: int, segments: int
) -> None:
    parts = split_parts(text)
    assert "".join(parts) == text
    assert len(parts) == segments
    capacity = analyze(text).per_segment
    assert all(_units(part, encoding) <= capacity for part in parts)


def _units(part: str, encoding: str) -> int:
    if encoding == "UCS-2":
        return len(part.encode("utf-16-le")) // 2
    return sum(2 if char in EXTENSION else 1 for char in part)


def test_characters_count_code_points_not_units() -> None:
    assert analyze(GRIN * 3).characters == 3
    assert analyze("€€").characters == 2
    assert analyze("").characters == 0


@pytest.mark.parametrize(
    ("text", "per_segment"),
    [("a" * 160, 160), ("a" * 161, 153), ("ê" * 70, 70), ("ê" * 71, 67)],
)
def test_per_segment_reports_capacity_applied(text: str, per_segment: int) -> None:
    assert analyze(text).per_segment == per_segment


def test_escape_pair_moves_whole_to_next_part() -> None:
    parts = split_parts("a" * 152 + "€" + "a" * 152)
    assert parts[0] == "a" * 152
    assert parts[1].startswith("€")


def test_emoji_moves_whole_to_next_part() -> None:
    parts = split_parts("ê" * 66 + GRIN + "ê" * 66)
    assert parts[0] == "ê" * 66
    assert parts[1].startswith(GRIN)


def test_empty_text_has_no_parts() -> None:
    assert split_parts("") == []


def test_units_and_encoding_match_the_cost_of_each_character() -> None:
    """`analyze` counts in C; each character's cost, added one by one, is the definition."""
    rng = random.Random(7)
    alphabet = "aZ09 @£é\nΔ€^{}[]~|\\ñ" + "ç中😀\ud800ÿ"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 400)))
        gsm = all(c in segments._GSM7_BASIC or c in segments._GSM7_EXTENSION for c in text)
        encoding = "GSM-7" if gsm else "UCS-2"
        info = segments.analyze(text)
        assert info.encoding == encoding, text
        assert info.units == sum(segments._cost(c, encoding) for c in text), text
