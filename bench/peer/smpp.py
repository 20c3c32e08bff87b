"""The few SMPP 3.4 PDUs a message centre needs to take submissions from Jasmin: binds,
enquire_link, submit_sm, unbind, and generic_nack for anything else. Pure encoding and
decoding (big-endian header of four 32-bit integers, C-octet strings), no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct(">IIII")  # command_length, command_id, command_status, sequence_number
MAX_PDU = 64 * 1024  # far above any PDU Jasmin sends; a longer length means a broken stream

GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
RESPONSE = 0x80000000  # a response's id is its request's id with the top bit set

BINDS = frozenset({BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER})

ESME_ROK = 0x00000000
ESME_RINVCMDLEN = 0x00000002
ESME_RINVCMDID = 0x00000003


class PduError(ValueError):
    """Bytes that are not a PDU this module reads."""


@dataclass(frozen=True)
class Pdu:
    command_id: int
    status: int
    sequence: int
    body: bytes = b""

    def encode(self) -> bytes:
        return HEADER.pack(HEADER.size + len(self.body), self.command_id, self.status,
                           self.sequence) + self.body  # fmt: skip


def pdu_length(header: bytes) -> int:
    """The whole PDU's length from its first 16 bytes (checked to be sane)."""
    length: int = HEADER.unpack(header)[0]
    if not HEADER.size <= length <= MAX_PDU:
        raise PduError(f"command_length {length} out of range")
    return length


def decode(data: bytes) -> Pdu:
    """One whole PDU (exactly `command_length` bytes)."""
    if len(data) < HEADER.size:
        raise PduError("shorter than a PDU header")
    length, command_id, status, sequence = HEADER.unpack_from(data)
    if length != len(data):
        raise PduError(f"command_length {length} but {len(data)} bytes")
    return Pdu(command_id, status, sequence, data[HEADER.size :])


def c_string(value: str) -> bytes:
    return value.encode("latin-1") + b"\0"


def read_c_string(body: bytes, offset: int) -> tuple[str, int]:
    """The C-octet string at `offset` and the offset after its NUL."""
    end = body.find(b"\0", offset)
    if end < 0:
        raise PduError("C-octet string without its NUL")
    return body[offset:end].decode("latin-1"), end + 1


@dataclass(frozen=True)
class Bind:
    system_id: str
    password: str
    system_type: str
    interface_version: int


def parse_bind(body: bytes) -> Bind:
    system_id, at = read_c_string(body, 0)
    password, at = read_c_string(body, at)
    system_type, at = read_c_string(body, at)
    if at >= len(body):
        raise PduError("bind without interface_version")
    return Bind(system_id, password, system_type, body[at])


def bind_body(system_id: str, password: str, system_type: str = "") -> bytes:
    """A bind request's body (interface 3.4, TON/NPI unknown, empty address range)."""
    return (
        c_string(system_id) + c_string(password) + c_string(system_type)
        + bytes([0x34, 0, 0]) + c_string("")
    )  # fmt: skip


@dataclass(frozen=True)
class Submit:
    source_addr: str
    destination_addr: str
    registered_delivery: int
    data_coding: int
    short_message: bytes


def parse_submit(body: bytes) -> Submit:
    """submit_sm's mandatory fields (optional TLVs after short_message are not read)."""
    _service_type, at = read_c_string(body, 0)
    at += 2  # source_addr_ton, source_addr_npi
    source, at = read_c_string(body, at)
    at += 2  # dest_addr_ton, dest_addr_npi
    destination, at = read_c_string(body, at)
    at += 3  # esm_class, protocol_id, priority_flag
    _schedule, at = read_c_string(body, at)
    _validity, at = read_c_string(body, at)
    if at + 5 > len(body):
        raise PduError("submit_sm cut short")
    registered_delivery, _replace, data_coding, _default_id, sm_length = body[at : at + 5]
    at += 5
    if at + sm_length > len(body):
        raise PduError("short_message longer than the PDU")
    return Submit(source, destination, registered_delivery, data_coding,
                  body[at : at + sm_length])  # fmt: skip


def submit_body(source: str, destination: str, message: bytes, data_coding: int = 0) -> bytes:
    """A submit_sm body (what an ESME sends; the tests use it to play Jasmin's side)."""
    if len(message) > 254:
        raise PduError("short_message longer than 254 octets")
    return (
        c_string("") + bytes([1, 1]) + c_string(source) + bytes([1, 1]) + c_string(destination)
        + bytes([0, 0, 0]) + c_string("") + c_string("")
        + bytes([0, 0, data_coding, 0, len(message)]) + message
    )  # fmt: skip


def response(request: Pdu, body: bytes = b"", status: int = ESME_ROK) -> Pdu:
    return Pdu(request.command_id | RESPONSE, status, request.sequence, body)


def generic_nack(sequence: int, status: int) -> Pdu:
    return Pdu(GENERIC_NACK, status, sequence)
