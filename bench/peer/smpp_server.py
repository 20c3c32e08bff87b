"""A minimal SMPP 3.4 message centre for the peer benchmark: it accepts any bind, answers
enquire_link and unbind, answers every submit_sm with a message id at once, and counts the
submissions and their distinct destinations. It sends no delivery receipts (no deliver_sm).

A second port answers every connection with the counts as one JSON line and closes it, so the
benchmark reads them from another process:

    python -m bench.peer.smpp_server --port 2775 --stats-port 2776
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from dataclasses import dataclass, field

from bench.peer import smpp


@dataclass
class Counts:
    binds: int = 0
    submits: int = 0
    malformed: int = 0
    destinations: set[str] = field(default_factory=set)

    def as_json(self) -> dict[str, int]:
        return {
            "binds": self.binds,
            "submit_sm": self.submits,
            "destinations": len(self.destinations),
            "malformed": self.malformed,
        }


class MessageCentre:
    def __init__(self, system_id: str = "bench-smsc") -> None:
        self.system_id = system_id
        self.counts = Counts()
        self._next_id = 0

    def answer(self, pdu: smpp.Pdu) -> smpp.Pdu | None:
        """The response to one request PDU (None for responses the peer sends us)."""
        if pdu.command_id & smpp.RESPONSE:
            return None  # e.g. a deliver_sm_resp; we send no deliver_sm, so none expected
        if pdu.command_id in smpp.BINDS:
            self.counts.binds += 1
            return smpp.response(pdu, smpp.c_string(self.system_id))
        if pdu.command_id == smpp.SUBMIT_SM:
            try:
                submit = smpp.parse_submit(pdu.body)
            except smpp.PduError:
                self.counts.malformed += 1
                return smpp.response(pdu, smpp.c_string(""), smpp.ESME_RINVCMDLEN)
            self.counts.submits += 1
            self.counts.destinations.add(submit.destination_addr)
            self._next_id += 1
            return smpp.response(pdu, smpp.c_string(f"{self._next_id:x}"))
        if pdu.command_id in (smpp.ENQUIRE_LINK, smpp.UNBIND):
            return smpp.response(pdu)
        return smpp.generic_nack(pdu.sequence, smpp.ESME_RINVCMDID)

    async def serve_session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                header = await reader.readexactly(smpp.HEADER.size)
                length = smpp.pdu_length(header)
                pdu = smpp.decode(header + await reader.readexactly(length - smpp.HEADER.size))
                reply = self.answer(pdu)
                if reply is not None:
                    writer.write(reply.encode())
                if pdu.command_id == smpp.UNBIND:
                    await writer.drain()
                    break
                if writer.transport.get_write_buffer_size() > 64 * 1024:
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, smpp.PduError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def serve_stats(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(json.dumps(self.counts.as_json()).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


async def serve(host: str, port: int, stats_port: int) -> None:
    centre = MessageCentre()
    smsc = await asyncio.start_server(centre.serve_session, host, port)
    stats = await asyncio.start_server(centre.serve_stats, host, stats_port)
    async with smsc, stats:
        await asyncio.gather(smsc.serve_forever(), stats.serve_forever())


def read_counts(host: str, stats_port: int, timeout: float = 5.0) -> dict[str, int]:
    """The counts of a server running in another process."""
    import socket

    with socket.create_connection((host, stats_port), timeout=timeout) as sock:
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    counts: dict[str, int] = json.loads(data)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats-port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.stats_port))


if __name__ == "__main__":
    main()
