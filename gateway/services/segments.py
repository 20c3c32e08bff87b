"""How many SMS segments a text costs, and where a carrier would cut it.

A message is GSM-7 when every character is in the GSM 03.38 default alphabet or its extension
table; one character outside both forces UCS-2 for the whole message. A single SMS carries
160 septets (GSM-7) or 70 UTF-16 code units (UCS-2). A longer message is sent as concatenated
parts whose user-data header leaves 153 septets or 67 units each, and a character is never
split across parts: an escape pair (extension character) or a surrogate pair (most emoji)
moves whole to the next part. The part count therefore comes from packing the characters one
by one, not from dividing the length, and can exceed ceil(units / 153).

The empty text is 0 segments: providers such as Twilio refuse an empty body, so there is
nothing that would be billed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet in code order, 0x00 to 0x7F, sixteen per row. 0x1B is the escape
# to the extension table, not a character, so it is left out of the set below.
_GSM7_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
_GSM7_BASIC = frozenset(_GSM7_TABLE) - {"\x1b"}
# Sent as ESC followed by a code from the extension table, so each costs two septets.
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_SINGLE_LIMIT: dict[Encoding, int] = {"GSM-7": 160, "UCS-2": 70}
_PART_LIMIT: dict[Encoding, int] = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True)
class SegmentInfo:
    encoding: Encoding
    characters: int  # Unicode code points, what a person would call the length
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    per_segment: int  # capacity of each segment as applied: 160/153 or 70/67


_GSM7 = _GSM7_BASIC | _GSM7_EXTENSION


def _encoding_of(text: str) -> Encoding:
    return "GSM-7" if _GSM7.issuperset(text) else "UCS-2"


def _units(text: str, encoding: Encoding) -> int:
    """The sum of `_cost` over the text, counted in C (every send analyses its text)."""
    if encoding == "GSM-7":
        return len(text) + sum(map(text.count, _GSM7_EXTENSION))
    # UTF-16 code units; a lone surrogate (valid JSON, "\ud800") is one unit, as in `_cost`
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _cost(char: str, encoding: Encoding) -> int:
    if encoding == "GSM-7":
        return 2 if char in _GSM7_EXTENSION else 1
    # Code points beyond the BMP travel as a surrogate pair.
    return 2 if ord(char) > 0xFFFF else 1


def _part_bounds(text: str, encoding: Encoding, capacity: int) -> Iterator[tuple[int, int]]:
    start, used = 0, 0
    for index, char in enumerate(text):
        cost = _cost(char, encoding)
        if used + cost > capacity:
            yield start, index
            start, used = index, 0
        used += cost
    yield start, len(text)


def analyze(text: str) -> SegmentInfo:
    encoding = _encoding_of(text)
    units = _units(text, encoding)
    if not text:
        return SegmentInfo(encoding, 0, 0, 0, _SINGLE_LIMIT[encoding])
    if units <= _SINGLE_LIMIT[encoding]:
        return SegmentInfo(encoding, len(text), units, 1, _SINGLE_LIMIT[encoding])
    capacity = _PART_LIMIT[encoding]
    segments = sum(1 for _ in _part_bounds(text, encoding, capacity))
    return SegmentInfo(encoding, len(text), units, segments, capacity)


def split_parts(text: str) -> list[str]:
    """The text of each segment, in order; `"".join(split_parts(t)) == t`."""
    if not text:
        return []
    encoding = _encoding_of(text)
    info = analyze(text)
    if info.segments == 1:
        return [text]
    return [text[start:end] for start, end in _part_bounds(text, encoding, info.per_segment)]
