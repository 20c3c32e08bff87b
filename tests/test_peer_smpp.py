"""The peer benchmark's SMPP message centre (bench/peer): PDU bytes as SMPP 3.4 lays them out,
and the answers Jasmin's connector waits for; how it counts what Jasmin accepted, and how it
stops a server with its children. No network, no Jasmin."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench.peer import smpp
from bench.peer.jasmin import AcceptedCount, GroupProc
from bench.peer.smpp_server import MessageCentre


def test_header_is_four_big_endian_words_with_the_total_length() -> None:
    pdu = smpp.Pdu(smpp.ENQUIRE_LINK, smpp.ESME_ROK, 7)
    assert pdu.encode() == bytes.fromhex("00000010 00000015 00000000 00000007")


def test_a_bind_transceiver_is_answered_with_its_sequence_and_our_system_id() -> None:
    centre = MessageCentre("smsc")
    request = smpp.Pdu(smpp.BIND_TRANSCEIVER, 0, 1, smpp.bind_body("jasmin", "secret"))
    assert smpp.parse_bind(request.body) == smpp.Bind("jasmin", "secret", "", 0x34)

    reply = centre.answer(smpp.decode(request.encode()))

    assert reply is not None
    # length 21, bind_transceiver_resp, ESME_ROK, sequence 1, then system_id as a C string
    assert reply.encode() == bytes.fromhex("00000015 80000009 00000000 00000001") + b"smsc\0"


@pytest.mark.parametrize("bind", [smpp.BIND_RECEIVER, smpp.BIND_TRANSMITTER])
def test_every_bind_kind_gets_its_own_response_id(bind: int) -> None:
    reply = MessageCentre().answer(smpp.Pdu(bind, 0, 3, smpp.bind_body("a", "b")))
    assert reply is not None and reply.command_id == bind | 0x80000000 and reply.status == 0


def test_submit_sm_gets_a_message_id_and_is_counted_by_destination() -> None:
    centre = MessageCentre()
    body = smpp.submit_body("Bench", "33612345678", "Répondez STOP".encode("latin-1"))
    parsed = smpp.parse_submit(body)
    assert (parsed.source_addr, parsed.destination_addr) == ("Bench", "33612345678")
    assert parsed.short_message.decode("latin-1") == "Répondez STOP"

    first = centre.answer(smpp.Pdu(smpp.SUBMIT_SM, 0, 10, body))
    again = centre.answer(smpp.Pdu(smpp.SUBMIT_SM, 0, 11, body))
    other = centre.answer(
        smpp.Pdu(smpp.SUBMIT_SM, 0, 12, smpp.submit_body("Bench", "33600000001", b"hi"))
    )

    assert first is not None and again is not None and other is not None
    assert (first.command_id, first.status, first.sequence) == (0x80000004, 0, 10)
    ids = {smpp.read_c_string(r.body, 0)[0] for r in (first, again, other)}
    assert len(ids) == 3 and "" not in ids  # a distinct message id each
    assert centre.counts.as_json() == {
        "binds": 0,
        "submit_sm": 3,
        "destinations": 2,
        "malformed": 0,
    }


def test_a_cut_submit_sm_is_refused_not_counted() -> None:
    centre = MessageCentre()
    body = smpp.submit_body("Bench", "33612345678", b"hello")[:-3]
    reply = centre.answer(smpp.Pdu(smpp.SUBMIT_SM, 0, 4, body))
    assert reply is not None and reply.status == smpp.ESME_RINVCMDLEN
    assert centre.counts.submits == 0 and centre.counts.malformed == 1


def test_enquire_link_and_unbind_get_empty_responses() -> None:
    centre = MessageCentre()
    for command in (smpp.ENQUIRE_LINK, smpp.UNBIND):
        reply = centre.answer(smpp.Pdu(command, 0, 99))
        assert reply is not None
        assert reply.encode() == (16).to_bytes(4, "big") + (command | 0x80000000).to_bytes(
            4, "big"
        ) + bytes(4) + (99).to_bytes(4, "big")


def test_unknown_commands_get_generic_nack_and_responses_get_nothing() -> None:
    centre = MessageCentre()
    nack = centre.answer(smpp.Pdu(0x00000103, 0, 5))  # data_sm: not served here
    assert nack is not None
    assert (nack.command_id, nack.status, nack.sequence) == (0x80000000, smpp.ESME_RINVCMDID, 5)
    assert centre.answer(smpp.Pdu(smpp.DELIVER_SM | 0x80000000, 0, 6)) is None


def test_lengths_that_cannot_be_a_pdu_are_rejected() -> None:
    with pytest.raises(smpp.PduError):
        smpp.pdu_length((8).to_bytes(4, "big") + bytes(12))
    with pytest.raises(smpp.PduError):
        smpp.pdu_length((1 << 30).to_bytes(4, "big") + bytes(12))
    with pytest.raises(smpp.PduError):
        smpp.decode(smpp.Pdu(smpp.ENQUIRE_LINK, 0, 1).encode()[:-1])


def test_accepted_messages_are_counted_from_jasmins_log_as_it_grows(tmp_path: Path) -> None:
    log = tmp_path / "http-api.log"
    count = AcceptedCount(log)
    assert count() == 0  # no log yet
    line = b"2026-12-02 05:09:56 INFO 1 SMS-MT [uid:bench] [msgid:%d] [to:b'33601000002']\n"
    cut = line.index(b"SMS-MT") + 3  # the writer is in the middle of the second line
    log.write_bytes(line % 1 + b"2026-12-02 05:09:56 INFO 1 HTTPApi started\n" + (line % 2)[:cut])
    assert count() == 1
    with log.open("ab") as fh:
        fh.write((line % 2)[cut:] + line % 3)
    assert count() == 3
    assert count() == 3


def test_a_server_is_stopped_with_the_children_it_left_behind(tmp_path: Path) -> None:
    # RabbitMQ's start script runs beam.smp as a child, which outlives a signal to the script
    script = "trap '' TERM; sleep 60 & echo $! > child.pid; wait"
    proc = GroupProc("server", ["sh", "-c", f"cd {tmp_path} && {script}"], os.environ, tmp_path)
    pid_file = tmp_path / "child.pid"
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.05)
    child = int(pid_file.read_text())

    proc.stop(timeout=0.5)

    assert not proc.alive()
    stat = Path(f"/proc/{child}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
