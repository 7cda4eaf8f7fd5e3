"""A minimal fake Azure Service Bus that the REAL azure-servicebus SDK talks to over AMQP 1.0.

It binds 127.0.0.1 only and speaks plain TCP, as the Service Bus emulator does (a connection
string with `UseDevelopmentEmulator=true` makes the SDK skip TLS and keep the port). Frames are
encoded and decoded with the SDK's own pure-Python AMQP codecs (azure.servicebus._pyamqp), so
the bytes on the wire are the ones the SDK produces and expects.

What it does: the protocol headers, SASL (ANONYMOUS/PLAIN/MSSBCBS, all accepted), Open, Begin,
Attach, Flow, Transfer (multi-frame included), Disposition, Detach, End, Close; the `$cbs`
put-token exchange (every token accepted); sending to a queue (duplicate detection by
message_id, as a queue with requiresDuplicateDetection); receiving in peek-lock mode with the
lock token as delivery tag, settled by complete (accepted), abandon (modified: delivery count
+ 1, dead-lettered at max_delivery_count), dead-letter (rejected) and release.

What it does not do: TLS, sessions, lock expiry and renewal, scheduled messages, the
$management operations (peek, deferral, renew-lock), topics, transactions.

    fake = FakeServiceBus(); await fake.start(); fake.connection_string ...; await fake.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.servicebus._pyamqp import _decode as amqp_decode
from azure.servicebus._pyamqp import _encode as amqp_encode
from azure.servicebus._pyamqp.constants import HEADER_FRAME, SASL_HEADER_FRAME
from azure.servicebus._pyamqp.endpoints import Source, Target
from azure.servicebus._pyamqp.error import AMQPError, ErrorCondition
from azure.servicebus._pyamqp.message import Header, Properties
from azure.servicebus._pyamqp.outcomes import Accepted, Modified, Rejected, Released
from azure.servicebus._pyamqp.performatives import (
    AttachFrame,
    BeginFrame,
    CloseFrame,
    DetachFrame,
    DispositionFrame,
    EndFrame,
    FlowFrame,
    OpenFrame,
    SASLMechanism,
    SASLOutcome,
    TransferFrame,
)
from azure.servicebus._pyamqp.types import TYPE, VALUE, AMQPTypes

OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)
SASL_INIT = 0x41
_HEADER, _DELIVERY_ANN, _MESSAGE_ANN, _PROPERTIES, _APP_PROPS = 0x70, 0x71, 0x72, 0x73, 0x74
CBS = "$cbs"
MAX_FRAME = 1024 * 1024


def entity_name(address: str | None) -> str:
    """The SDK addresses a queue as `amqp://host:port/<queue>` (or `<queue>` alone)."""
    text = address or ""
    if "://" in text:
        text = text.split("://", 1)[1].split("/", 1)[1] if "/" in text.split("://", 1)[1] else ""
    return text.strip("/")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def split_sections(payload: bytes) -> list[tuple[int, bytes, Any]]:
    """An AMQP message is a sequence of described sections: (descriptor, raw bytes, decoded value)."""
    out: list[tuple[int, bytes, Any]] = []
    view = memoryview(payload)
    pos = 0
    while pos < len(payload):
        descriptor = view[pos + 2]
        rest, value = amqp_decode._DECODE_BY_CONSTRUCTOR[view[pos + 3]](view[pos + 4 :])
        end = len(payload) - len(rest)
        out.append((descriptor, bytes(view[pos:end]), value))
        pos = end
    return out


@dataclass
class StoredMessage:
    """A message as a queue holds it: its bare sections kept byte for byte, plus broker state."""

    queue: str
    bare: bytes  # properties, application-properties, body (and footer), as the sender encoded them
    message_id: str | None
    correlation_id: str | None
    reply_to: str | None
    application_properties: dict[str, Any]
    body: bytes
    sequence_number: int
    enqueued_at: float = field(default_factory=time.time)
    delivery_count: int = 0  # failed deliveries so far (the AMQP header's meaning)
    dead_letter_reason: str | None = None

    @classmethod
    def parse(cls, queue: str, payload: bytes, sequence_number: int) -> StoredMessage:
        bare = b""
        props: list[Any] = []
        app: dict[str, Any] = {}
        body = b""
        for descriptor, raw, value in split_sections(payload):
            if descriptor in (_HEADER, _DELIVERY_ANN, _MESSAGE_ANN):
                continue  # the broker writes its own header and annotations on delivery
            bare += raw
            if descriptor == _PROPERTIES:
                props = [*value, *([None] * 13)]
            elif descriptor == _APP_PROPS:
                app = {_text(k) or "": (_text(v) if isinstance(v, bytes) else v) for k, v in (value or {}).items()}
            elif descriptor == 0x75:  # data
                body += bytes(value)
        return cls(
            queue=queue,
            bare=bare,
            message_id=_text(props[0]) if props else None,
            correlation_id=_text(props[5]) if props else None,
            reply_to=_text(props[4]) if props else None,
            application_properties=app,
            body=body,
            sequence_number=sequence_number,
        )

    def payload(self, locked_until: float) -> bytes:
        out = bytearray()
        amqp_encode.encode_value(
            out, amqp_encode.describe_performative(Header(durable=True, delivery_count=self.delivery_count))
        )
        annotations = {
            b"x-opt-sequence-number": {TYPE: AMQPTypes.long, VALUE: self.sequence_number},
            b"x-opt-enqueued-time": {TYPE: AMQPTypes.timestamp, VALUE: int(self.enqueued_at * 1000)},
            b"x-opt-locked-until": {TYPE: AMQPTypes.timestamp, VALUE: int(locked_until * 1000)},
        }
        amqp_encode.encode_value(
            out,
            {
                TYPE: AMQPTypes.described,
                VALUE: ({TYPE: AMQPTypes.ulong, VALUE: _MESSAGE_ANN}, amqp_encode.encode_annotations(annotations)),
            },
        )
        return bytes(out) + self.bare


@dataclass
class _Link:
    name: str
    client_handle: int
    handle: int
    client_is_receiver: bool
    address: str
    credit: int = 0
    delivery_count: int = 0
    outbox: deque[bytes] = field(default_factory=deque)  # control replies ($cbs) waiting for credit
    partial: bytearray = field(default_factory=bytearray)
    partial_delivery: tuple[int, bool] | None = None


@dataclass
class _Session:
    channel: int
    client_channel: int
    next_outgoing_id: int = 0
    next_incoming_id: int = 0
    links: dict[int, _Link] = field(default_factory=dict)  # by the client's handle
    unsettled: dict[int, tuple[_Link, StoredMessage]] = field(default_factory=dict)  # by delivery id


class _Connection:
    def __init__(self, bus: FakeServiceBus, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.bus, self.reader, self.writer = bus, reader, writer
        self.sessions: dict[int, _Session] = {}  # by the client's channel
        self._write_lock = asyncio.Lock()
        self.closed = False

    # -- wire -----------------------------------------------------------------------------------------
    async def send(self, channel: int, frame: Any, sasl: bool = False) -> None:
        header, body = amqp_encode.encode_frame(frame, frame_type=b"\x01" if sasl else b"\x00")
        data = header + struct.pack(">H", channel) + (body or b"")
        async with self._write_lock:
            self.writer.write(data)
            await self.writer.drain()

    async def read_frame(self) -> tuple[int, int, list[Any]] | None:
        head = await self.reader.readexactly(8)
        size, doff, _ftype, channel = struct.unpack(">IBBH", head)
        rest = await self.reader.readexactly(size - 8)
        payload = rest[doff * 4 - 8 :]
        if not payload:
            return None  # an empty frame: a heartbeat
        kind, fields = amqp_decode.decode_frame(memoryview(payload))
        return channel, kind, fields

    async def expect_header(self, expected: bytes) -> None:
        got = await self.reader.readexactly(8)
        if got != expected:
            raise ConnectionError(f"unexpected protocol header {got!r}")
        self.writer.write(expected)
        await self.writer.drain()

    # -- the conversation -----------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            first = await self.reader.readexactly(8)
            if first == SASL_HEADER_FRAME:
                self.writer.write(SASL_HEADER_FRAME)
                await self.send(
                    0, SASLMechanism(sasl_server_mechanisms=[b"MSSBCBS", b"ANONYMOUS", b"PLAIN"]), sasl=True
                )
                frame = await self.read_frame()
                if frame is None or frame[1] != SASL_INIT:
                    raise ConnectionError("expected sasl-init")
                await self.send(0, SASLOutcome(code=0, additional_data=None), sasl=True)
                await self.expect_header(HEADER_FRAME)
            elif first == HEADER_FRAME:
                self.writer.write(HEADER_FRAME)
            else:
                raise ConnectionError(f"unexpected protocol header {first!r}")
            while not self.closed:
                frame = await self.read_frame()
                if frame is not None:
                    await self.dispatch(*frame)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.release_all()
            self.bus.connections.discard(self)
            with contextlib.suppress(Exception):
                self.writer.close()

    async def dispatch(self, channel: int, kind: int, f: list[Any]) -> None:
        if kind == OPEN:
            await self.send(
                0,
                OpenFrame(
                    container_id="fake-servicebus",
                    hostname=None,
                    max_frame_size=MAX_FRAME,
                    channel_max=255,
                    idle_timeout=None,
                    outgoing_locales=None,
                    incoming_locales=None,
                    offered_capabilities=None,
                    desired_capabilities=None,
                    properties=None,
                ),
            )
        elif kind == BEGIN:
            session = _Session(channel=channel, client_channel=channel, next_incoming_id=f[1])
            self.sessions[channel] = session
            await self.send(
                channel,
                BeginFrame(
                    remote_channel=channel,
                    next_outgoing_id=0,
                    incoming_window=65535,
                    outgoing_window=65535,
                    handle_max=255,
                    offered_capabilities=None,
                    desired_capabilities=None,
                    properties=None,
                ),
            )
        elif kind == ATTACH:
            await self.on_attach(self.sessions[channel], f)
        elif kind == FLOW:
            await self.on_flow(self.sessions[channel], f)
        elif kind == TRANSFER:
            await self.on_transfer(self.sessions[channel], f)
        elif kind == DISPOSITION:
            await self.on_disposition(self.sessions[channel], f)
        elif kind == DETACH:
            session = self.sessions[channel]
            link = session.links.pop(f[0], None)
            await self.send(channel, DetachFrame(handle=link.handle if link else f[0], closed=True, error=None))
        elif kind == END:
            session = self.sessions.pop(channel)
            self.release_session(session)
            await self.send(channel, EndFrame(error=None))
        elif kind == CLOSE:
            await self.send(0, CloseFrame(error=None))
            self.closed = True

    async def on_attach(self, session: _Session, f: list[Any]) -> None:
        name, handle, client_is_receiver = _text(f[0]) or "", f[1], bool(f[2])
        source, target = f[5], f[6]
        address_field = source if client_is_receiver else target
        address = _text(address_field[0]) if address_field else ""
        link = _Link(name, handle, handle, client_is_receiver, entity_name(address))
        session.links[handle] = link
        missing = self.bus.queue_names is not None and link.address != CBS and link.address not in self.bus.queue_names
        await self.send(
            session.channel,
            AttachFrame(
                name=name,
                handle=link.handle,
                role=not client_is_receiver,
                send_settle_mode=f[3],
                rcv_settle_mode=f[4],
                # for an entity that does not exist, the service answers without the entity's end
                source=None if missing and client_is_receiver else Source(address=_text(source[0]) if source else None),
                target=None
                if missing and not client_is_receiver
                else Target(address=_text(target[0]) if target else None),
                unsettled=None,
                incomplete_unsettled=False,
                initial_delivery_count=0 if client_is_receiver else None,
                max_message_size=MAX_FRAME * 16,
                offered_capabilities=None,
                desired_capabilities=None,
                properties=None,
            ),
        )
        if missing:
            # as Service Bus does for an entity that does not exist: the attach is answered, then
            # the link is detached with amqp:not-found
            session.links.pop(handle, None)
            error = AMQPError(
                condition=ErrorCondition.NotFound,
                description=f"The messaging entity 'sb://127.0.0.1/{link.address}' could not be found.",
            )
            await self.send(session.channel, DetachFrame(handle=link.handle, closed=True, error=error))
            return
        if not client_is_receiver:
            link.credit = 1000
            await self.grant(session, link)

    async def grant(self, session: _Session, link: _Link) -> None:
        await self.send(
            session.channel,
            FlowFrame(
                next_incoming_id=session.next_incoming_id,
                incoming_window=65535,
                next_outgoing_id=session.next_outgoing_id,
                outgoing_window=65535,
                handle=link.handle,
                delivery_count=link.delivery_count,
                link_credit=link.credit,
                available=None,
                drain=False,
                echo=False,
                properties=None,
            ),
        )

    async def on_flow(self, session: _Session, f: list[Any]) -> None:
        handle = f[4]
        if handle is None or handle not in session.links:
            return
        link = session.links[handle]
        if not link.client_is_receiver:
            return
        client_delivery_count = f[5] if f[5] is not None else link.delivery_count
        link.credit = max(0, client_delivery_count + (f[6] or 0) - link.delivery_count)
        await self.pump(session, link)
        if f[8] and link.credit > 0:  # drain: use up the credit, tell the receiver
            link.delivery_count += link.credit
            link.credit = 0
            await self.send(
                session.channel,
                FlowFrame(
                    next_incoming_id=session.next_incoming_id,
                    incoming_window=65535,
                    next_outgoing_id=session.next_outgoing_id,
                    outgoing_window=65535,
                    handle=link.handle,
                    delivery_count=link.delivery_count,
                    link_credit=0,
                    available=0,
                    drain=True,
                    echo=False,
                    properties=None,
                ),
            )

    async def on_transfer(self, session: _Session, f: list[Any]) -> None:
        link = session.links[f[0]]
        if link.partial_delivery is None:
            link.partial_delivery = (f[1], bool(f[4]))
            session.next_incoming_id = f[1] + 1
        link.partial += bytes(f[-1])
        if f[5]:  # more frames of this delivery follow
            return
        delivery_id, settled = link.partial_delivery
        payload = bytes(link.partial)
        link.partial, link.partial_delivery = bytearray(), None
        link.delivery_count += 1
        if link.address == CBS:
            await self.cbs_reply(session, split_sections(payload))
        else:
            self.bus.enqueue(link.address, payload)
        if not settled:
            await self.send(
                session.channel,
                DispositionFrame(
                    role=True, first=delivery_id, last=delivery_id, settled=True, state=Accepted(), batchable=None
                ),
            )
        if link.credit - link.delivery_count < 100:
            link.credit = link.delivery_count + 1000
            await self.grant(session, link)

    async def cbs_reply(self, session: _Session, sections: list[tuple[int, bytes, Any]]) -> None:
        request_id = next((next(iter(v)) for d, _, v in sections if d == _PROPERTIES), None)
        out = bytearray()
        amqp_encode.encode_value(out, amqp_encode.describe_performative(Properties(correlation_id=request_id)))
        amqp_encode.encode_value(
            out,
            {
                TYPE: AMQPTypes.described,
                VALUE: (
                    {TYPE: AMQPTypes.ulong, VALUE: _APP_PROPS},
                    amqp_encode.encode_application_properties(
                        {b"status-code": 202, b"status-description": b"Accepted"}
                    ),
                ),
            },
        )
        amqp_encode.encode_value(out, {TYPE: AMQPTypes.described, VALUE: ({TYPE: AMQPTypes.ulong, VALUE: 0x77}, None)})
        reply_link = next((lk for lk in session.links.values() if lk.client_is_receiver and lk.address == CBS), None)
        if reply_link is None:
            return
        reply_link.outbox.append(bytes(out))
        await self.pump(session, reply_link)

    async def pump(self, session: _Session, link: _Link) -> None:
        """Send what the link's credit allows: control replies first, then queued messages."""
        while link.credit > 0:
            if link.outbox:
                payload, stored = link.outbox.popleft(), None
                settled = True
            else:
                stored = self.bus.take(link.address)
                if stored is None:
                    return
                payload, settled = stored.payload(time.time() + self.bus.lock_duration_s), False
            delivery_id = session.next_outgoing_id
            session.next_outgoing_id += 1
            link.credit -= 1
            link.delivery_count += 1
            tag = uuid.uuid4()
            if stored is not None:
                session.unsettled[delivery_id] = (link, stored)
            await self.send(
                session.channel,
                TransferFrame(
                    handle=link.handle,
                    delivery_id=delivery_id,
                    delivery_tag=tag.bytes_le,
                    message_format=0,
                    settled=settled,
                    more=False,
                    rcv_settle_mode=None,
                    state=None,
                    resume=False,
                    aborted=False,
                    batchable=False,
                    payload=payload,
                ),
            )

    async def on_disposition(self, session: _Session, f: list[Any]) -> None:
        first, last, settled, state = f[1], f[2] if f[2] is not None else f[1], f[3], f[4]
        outcome = next(iter(state)) if isinstance(state, dict) and state else "accepted"
        for delivery_id in range(first, last + 1):
            entry = session.unsettled.pop(delivery_id, None)
            if entry is None:
                continue
            _link, stored = entry
            if outcome == "accepted":
                self.bus.completed.append(stored)
            elif outcome == "modified":
                fields = [*list(state[outcome] or []), None, None]
                self.bus.abandon(stored, failed=bool(fields[0]))
            elif outcome == "rejected":
                self.bus.dead_letter(stored, "rejected by the receiver")
            else:  # released
                self.bus.abandon(stored, failed=False)
        if not settled:  # the SDK checks that the broker reports the outcome it asked for
            echoed: Any = {"accepted": Accepted(), "released": Released(), "rejected": Rejected()}.get(outcome)
            if outcome == "modified":
                fields = [*list(state[outcome] or []), None, None]
                echoed = Modified(delivery_failed=fields[0], undeliverable_here=fields[1])
            await self.send(
                session.channel,
                DispositionFrame(role=False, first=first, last=last, settled=True, state=echoed, batchable=None),
            )
        await self.bus.pump_all()

    def release_session(self, session: _Session) -> None:
        for _link, stored in session.unsettled.values():
            self.bus.abandon(stored, failed=True)  # a lost lock counts as a delivery, as in Service Bus
        session.unsettled.clear()

    def release_all(self) -> None:
        for session in self.sessions.values():
            self.release_session(session)
        self.sessions.clear()


class FakeServiceBus:
    def __init__(
        self, *, max_delivery_count: int = 10, lock_duration_s: float = 60.0, queue_names: set[str] | None = None
    ) -> None:
        self.max_delivery_count = max_delivery_count
        # None: every queue exists (created on first use); a set: only those, others are not-found
        self.queue_names = queue_names
        self.lock_duration_s = lock_duration_s
        self.queues: dict[str, deque[StoredMessage]] = {}
        self.sent: dict[str, list[StoredMessage]] = {}  # everything accepted, per queue
        self.completed: list[StoredMessage] = []
        self.dead_letters: dict[str, list[StoredMessage]] = {}
        self.connections: set[_Connection] = set()
        self._seen: set[tuple[str, str]] = set()
        self._seq = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://127.0.0.1:{self.port}/;SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=fake-key-not-a-secret;UseDevelopmentEmulator=true"
        )

    async def start(self) -> FakeServiceBus:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                conn.closed = True
                conn.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self, reader, writer)
        self.connections.add(conn)
        await conn.run()

    # -- the broker ------------------------------------------------------------------------------------
    def enqueue(self, queue: str, payload: bytes) -> None:
        self._seq += 1
        stored = StoredMessage.parse(queue, payload, self._seq)
        key = (queue, stored.message_id or "")
        if stored.message_id and key in self._seen:
            return  # duplicate detection
        self._seen.add(key)
        self.sent.setdefault(queue, []).append(stored)
        self.queues.setdefault(queue, deque()).append(stored)
        asyncio.get_running_loop().create_task(self.pump_all())

    def take(self, queue: str) -> StoredMessage | None:
        q = self.queues.get(queue)
        return q.popleft() if q else None

    def abandon(self, stored: StoredMessage, *, failed: bool) -> None:
        if failed:
            stored.delivery_count += 1
        if stored.delivery_count >= self.max_delivery_count:
            self.dead_letter(stored, "MaxDeliveryCountExceeded")
            return
        self.queues.setdefault(stored.queue, deque()).appendleft(stored)

    def dead_letter(self, stored: StoredMessage, reason: str) -> None:
        stored.dead_letter_reason = reason
        self.dead_letters.setdefault(stored.queue, []).append(stored)

    async def pump_all(self) -> None:
        for conn in list(self.connections):
            for session in list(conn.sessions.values()):
                for link in list(session.links.values()):
                    if link.client_is_receiver and link.credit > 0 and link.address != CBS:
                        with contextlib.suppress(Exception):
                            await conn.pump(session, link)

    def depth(self, queue: str) -> int:
        return len(self.queues.get(queue) or ())


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
