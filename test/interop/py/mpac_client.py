"""A small MPAC client that behaves on the wire like the Python `mpac` runtime
and the Python `mpac-mcp` bridge (shared/docs/bridge.md §1, §2.3-§2.5, §3;
shared/docs/protocol.md §2, §4, §11).

Standard library plus `websockets` (Debian python3-websockets 10.4; the
keyword for extra upgrade headers is `extra_headers` before 14 and
`additional_headers` from 14 on, as in the bridge).

Nothing here is copied from the upstream packages; it is written from the
behaviour those documents describe, so that our TypeScript coordinator can be
checked against what existing Python clients send and accept.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional

try:
    import websockets
    from websockets.exceptions import ConnectionClosed
except ImportError:  # pragma: no cover - reported by the caller
    websockets = None  # type: ignore[assignment]
    ConnectionClosed = Exception  # type: ignore[assignment,misc]

PROTOCOL_VERSION = '0.1.13'

# The ten envelope keys the Python runtime knows (protocol.md §2.1, §13.1 W3).
# Its dataclass parser raises TypeError on any other key, which kills the client.
PY_ENVELOPE_KEYS = (
    'protocol', 'version', 'message_type', 'message_id', 'session_id',
    'sender', 'ts', 'payload', 'watermark', 'coordinator_epoch',
)

# The bridge's default capability list (bridge.md §2.1 MPAC_AGENT_CAPABILITIES), sorted as it sends it.
BRIDGE_CAPABILITIES = sorted([
    'intent.broadcast', 'intent.withdraw', 'intent.claim', 'op.commit',
    'conflict.ack', 'conflict.escalate', 'conflict.resolve',
])

# How clients read the race-lock holder out of a STALE_INTENT description (protocol.md §6.4).
STALE_INTENT_HOLDER = re.compile(r'by intent (?P<intent>\S+) \(principal (?P<principal>[^)]+)\)')


# --------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------

def state_ref(text: str) -> str:
    """`sha256:` + first 16 hex of SHA-256 of the UTF-8 text (bridge.md §2.3)."""
    return 'sha256:' + hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]


def py_ts(now: Optional[datetime] = None) -> str:
    """`isoformat()` in UTC with `+00:00` turned into `Z`; no fraction when microseconds are 0."""
    now = now or datetime.now(timezone.utc)
    return now.isoformat().replace('+00:00', 'Z')


def derived_session_id(path: str) -> str:
    """`mpac-local-<slug>-<first 10 hex of SHA-1(path)>` (bridge.md §2.3)."""
    last = path.rstrip('/').split('/')[-1] if path != '/' else ''
    slug = last.replace(' ', '-').lower() or 'workspace'
    return f"mpac-local-{slug}-{hashlib.sha1(path.encode('utf-8')).hexdigest()[:10]}"


def derived_port(path: str) -> int:
    return 38000 + int(hashlib.sha1(path.encode('utf-8')).hexdigest()[:8], 16) % 2000


def py_list_repr(items: List[str]) -> str:
    return repr(list(items))


# --------------------------------------------------------------------------
# Strict envelope parsing, the way the Python dataclasses do it
# --------------------------------------------------------------------------

class EnvelopeError(ValueError):
    """A frame a Python client could not turn into its envelope dataclass."""


@dataclass
class Sender:
    principal_id: str
    principal_type: str
    sender_instance_id: str


@dataclass
class Watermark:
    kind: str = 'lamport_clock'
    value: Any = 0
    lamport_value: Optional[int] = None

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> 'Watermark':
        return cls(kind=data.get('kind', 'lamport_clock'), value=data.get('value', 0),
                   lamport_value=data.get('lamport_value'))


@dataclass
class Envelope:
    message_type: str
    message_id: str
    session_id: str
    sender: Sender
    ts: str
    payload: Dict[str, Any]
    protocol: str = 'MPAC'
    version: str = PROTOCOL_VERSION
    watermark: Optional[Watermark] = None
    coordinator_epoch: Optional[int] = None


def parse_envelope(data: Any) -> Envelope:
    """Build the envelope with `cls(**data)` semantics: unknown or missing keys raise."""
    if not isinstance(data, dict):
        raise EnvelopeError(f'envelope is not an object: {type(data).__name__}')
    extra = sorted(set(data) - set(PY_ENVELOPE_KEYS))
    if extra:
        raise EnvelopeError(f'unexpected envelope keys {extra}')
    fields = dict(data)
    sender = fields.get('sender')
    if not isinstance(sender, dict):
        raise EnvelopeError('sender is not an object')
    try:
        fields['sender'] = Sender(**sender)
    except TypeError as exc:
        raise EnvelopeError(f'sender: {exc}') from None
    if fields.get('watermark') is not None:
        if not isinstance(fields['watermark'], dict):
            raise EnvelopeError('watermark is not an object')
        fields['watermark'] = Watermark.from_dict(fields['watermark'])
    if not isinstance(fields.get('payload'), dict):
        raise EnvelopeError('payload is not an object')
    try:
        return Envelope(**fields)
    except TypeError as exc:
        raise EnvelopeError(str(exc)) from None


# --------------------------------------------------------------------------
# Participant: builds envelopes like `mpac_protocol.core.participant`
# --------------------------------------------------------------------------

class LamportClock:
    """Ticks locally only; never merged with received watermarks (bridge.md §1.1)."""

    def __init__(self) -> None:
        self.value = 0

    def tick(self) -> Dict[str, Any]:
        self.value += 1
        return {'kind': 'lamport_clock', 'value': self.value}


class Participant:
    def __init__(self, principal_id: str, display_name: str, roles: Optional[List[str]] = None,
                 capabilities: Optional[List[str]] = None, token: Optional[str] = None,
                 principal_type: str = 'agent') -> None:
        self.principal_id = principal_id
        self.principal_type = principal_type
        self.display_name = display_name
        self.roles = roles or ['participant']
        self.capabilities = capabilities if capabilities is not None else list(BRIDGE_CAPABILITIES)
        self.token = token
        self.clock = LamportClock()
        self.sender_instance_id = f'{principal_id}:{uuid.uuid4()}'

    def envelope(self, message_type: str, session_id: str, payload: Dict[str, Any],
                 ts: Optional[str] = None) -> Dict[str, Any]:
        return {
            'protocol': 'MPAC',
            'version': PROTOCOL_VERSION,
            'message_type': message_type,
            'message_id': str(uuid.uuid4()),
            'session_id': session_id,
            'sender': {
                'principal_id': self.principal_id,
                'principal_type': self.principal_type,
                'sender_instance_id': self.sender_instance_id,
            },
            'ts': ts or py_ts(),
            'payload': payload,
            'watermark': self.clock.tick(),
        }

    def hello(self, session_id: str) -> Dict[str, Any]:
        payload: Dict[str, Any] = {'display_name': self.display_name, 'roles': self.roles,
                                   'capabilities': self.capabilities}
        if self.token:
            payload['credential'] = {'type': 'bearer_token', 'value': self.token}
        return self.envelope('HELLO', session_id, payload)

    def heartbeat(self, session_id: str, status: str = 'idle', ts: Optional[str] = None) -> Dict[str, Any]:
        return self.envelope('HEARTBEAT', session_id, {'status': status}, ts=ts)

    def goodbye(self, session_id: str, reason: str = 'completed', disposition: str = 'withdraw',
                active_intents: Optional[List[str]] = None) -> Dict[str, Any]:
        payload: Dict[str, Any] = {'reason': reason, 'intent_disposition': disposition}
        if active_intents:
            payload['active_intents'] = active_intents
        return self.envelope('GOODBYE', session_id, payload)

    def announce(self, session_id: str, intent_id: str, objective: str, scope: Dict[str, Any]) -> Dict[str, Any]:
        return self.envelope('INTENT_ANNOUNCE', session_id,
                             {'intent_id': intent_id, 'objective': objective, 'scope': scope})

    def withdraw(self, session_id: str, intent_id: str, reason: str = 'yielded') -> Dict[str, Any]:
        return self.envelope('INTENT_WITHDRAW', session_id, {'intent_id': intent_id, 'reason': reason})

    def claim(self, session_id: str, claim_id: str, original_intent_id: str, original_principal_id: str,
              new_intent_id: str, objective: str, scope: Dict[str, Any],
              justification: Optional[str] = None) -> Dict[str, Any]:
        payload: Dict[str, Any] = {
            'claim_id': claim_id, 'original_intent_id': original_intent_id,
            'original_principal_id': original_principal_id, 'new_intent_id': new_intent_id,
            'objective': objective, 'scope': scope,
        }
        if justification:
            payload['justification'] = justification
        return self.envelope('INTENT_CLAIM', session_id, payload)

    def commit(self, session_id: str, op_id: str, intent_id: str, target: str,
               state_ref_before: Optional[str] = None, state_ref_after: Optional[str] = None,
               content: Optional[str] = None, op_kind: str = 'replace') -> Dict[str, Any]:
        """OP_COMMIT; with `content`, the bridge's `file_changes` (bridge.md §1.2 submit_change)."""
        payload: Dict[str, Any] = {
            'op_id': op_id, 'intent_id': intent_id, 'target': target, 'op_kind': op_kind,
            'state_ref_before': state_ref_before, 'state_ref_after': state_ref_after,
        }
        if content is not None:
            payload['file_changes'] = {target: {'content': content, 'state_ref_before': state_ref_before}}
        return self.envelope('OP_COMMIT', session_id, payload)

    def ack(self, session_id: str, conflict_id: str, ack_type: str = 'seen') -> Dict[str, Any]:
        return self.envelope('CONFLICT_ACK', session_id, {'conflict_id': conflict_id, 'ack_type': ack_type})

    def escalate(self, session_id: str, conflict_id: str, escalate_to: str, reason: str) -> Dict[str, Any]:
        return self.envelope('CONFLICT_ESCALATE', session_id,
                             {'conflict_id': conflict_id, 'escalate_to': escalate_to, 'reason': reason})

    def resolve(self, session_id: str, conflict_id: str, decision: str,
                rationale: Optional[str] = None) -> Dict[str, Any]:
        """RESOLUTION as the Python participant sends it: no `resolution_id`."""
        payload: Dict[str, Any] = {'conflict_id': conflict_id, 'decision': decision}
        if rationale:
            payload['rationale'] = rationale
        return self.envelope('RESOLUTION', session_id, payload)


# --------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------

def _headers_kw(token: Optional[str]) -> Dict[str, Any]:
    if not token:
        return {}
    headers = [('Authorization', f'Bearer {token}')]
    major = int(websockets.__version__.split('.')[0])
    return {'additional_headers': headers} if major >= 14 else {'extra_headers': headers}


async def open_ws(uri: str, token: Optional[str] = None):
    return await websockets.connect(uri, open_timeout=10, **_headers_kw(token))


class QueryError(RuntimeError):
    pass


async def query(uri: str, frame: Dict[str, Any], token: Optional[str] = None,
                timeout: float = 2.0) -> Dict[str, Any]:
    """The bridge's short-lived query: open, send one sideband frame, read exactly ONE frame, close."""
    ws = await open_ws(uri, token)
    try:
        await ws.send(json.dumps(frame))
        try:
            raw = await asyncio.wait_for(ws.recv(), timeout)
        except asyncio.TimeoutError:
            raise QueryError(f'no reply to {frame.get("type")} within {timeout} s') from None
        except ConnectionClosed as exc:
            raise QueryError(f'closed before a reply: code {exc.code} {exc.reason!r}') from None
    finally:
        await ws.close()
    return json.loads(raw)


async def fetch_session_summary(uri: str, session_id: Optional[str], token: Optional[str] = None) -> Dict[str, Any]:
    """bridge `fetch_session_summary`: the reply must be SESSION_SUMMARY_RESPONSE; pinned ids must match."""
    reply = await query(uri, {'type': 'SESSION_SUMMARY'}, token)
    if reply.get('type') != 'SESSION_SUMMARY_RESPONSE':
        raise QueryError(f'unexpected reply {reply.get("type") or reply.get("message_type")!r}')
    session = reply.get('session') or {}
    if session_id is not None and session.get('session_id') != session_id:
        raise QueryError(f'session mismatch: {session.get("session_id")!r} != {session_id!r}')
    return session


async def fetch_file_state(uri: str, path: str, token: Optional[str] = None) -> Dict[str, Any]:
    """bridge `fetch_file_state`: FILE_CONTENT or FILE_ERROR, anything else is an error."""
    reply = await query(uri, {'type': 'FILE_READ', 'path': path}, token)
    if reply.get('type') not in ('FILE_CONTENT', 'FILE_ERROR'):
        raise QueryError(f'unexpected reply {reply.get("type") or reply.get("message_type")!r}')
    return reply


@dataclass
class Received:
    frame: Dict[str, Any]
    error: Optional[str] = None


class Connection:
    """The persistent participant connection: a listener that parses every
    protocol frame strictly (like the Python dataclasses) and keeps sideband
    frames (FILE_UPDATED, sideband replies) apart, as the mpac agent does."""

    def __init__(self, uri: str, participant: Participant, session_id: str, send_header: bool = True) -> None:
        self.uri = uri
        self.p = participant
        self.session_id = session_id
        self.send_header = send_header
        self.ws = None
        self.protocol: List[Dict[str, Any]] = []
        self.sideband: List[Dict[str, Any]] = []
        self.parse_errors: List[str] = []
        self.closed: Optional[tuple] = None
        self._changed = asyncio.Event()
        self._task: Optional[asyncio.Task] = None
        self.hello_id: Optional[str] = None

    async def open(self) -> None:
        self.ws = await open_ws(self.uri, self.p.token if self.send_header else None)
        self._task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        try:
            async for raw in self.ws:
                data = json.loads(raw)
                if isinstance(data, dict) and 'message_type' in data:
                    try:
                        parse_envelope(data)
                    except EnvelopeError as exc:
                        self.parse_errors.append(f'{data.get("message_type")}: {exc}')
                    self.protocol.append(data)
                else:
                    self.sideband.append(data)
                self._wake()
        except ConnectionClosed as exc:
            self.closed = (exc.code, exc.reason)
        finally:
            if self.closed is None and self.ws is not None:
                self.closed = (self.ws.close_code, self.ws.close_reason)
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def send(self, envelope: Dict[str, Any]) -> Dict[str, Any]:
        await self.ws.send(json.dumps(envelope, ensure_ascii=False))
        return envelope

    async def wait_for(self, pred: Callable[[Dict[str, Any]], bool], timeout: float = 5.0,
                       start: int = 0, where: str = 'protocol') -> Dict[str, Any]:
        """First frame (from index `start`) matching `pred`, waiting up to `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frames = self.protocol if where == 'protocol' else self.sideband
            for f in frames[start:]:
                if pred(f):
                    return f
            if self.closed is not None:
                raise ConnectionError(f'connection closed ({self.closed[0]} {self.closed[1]!r}) while waiting')
            left = deadline - loop.time()
            if left <= 0:
                raise asyncio.TimeoutError(f'no matching frame within {timeout} s')
            ev = self._changed
            try:
                await asyncio.wait_for(ev.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def request(self, envelope: Dict[str, Any], timeout: float = 5.0) -> Dict[str, Any]:
        """Send and return the reply that names this message: the relay/echo carrying its
        `message_id`, a PROTOCOL_ERROR whose `refers_to` is it, or SESSION_INFO for a HELLO."""
        mid = envelope['message_id']
        start = len(self.protocol)
        await self.send(envelope)

        def match(f: Dict[str, Any]) -> bool:
            if f.get('message_id') == mid:
                return True
            if f.get('message_type') == 'PROTOCOL_ERROR' and (f.get('payload') or {}).get('refers_to') == mid:
                return True
            return envelope['message_type'] == 'HELLO' and f.get('message_type') == 'SESSION_INFO'
        return await self.wait_for(match, timeout, start)

    async def hello(self, timeout: float = 2.0) -> Dict[str, Any]:
        """HELLO, then up to 2 s for SESSION_INFO (bridge `ensure_connected`)."""
        envelope = self.p.hello(self.session_id)
        self.hello_id = envelope['message_id']
        return await self.request(envelope, timeout)

    async def sideband_request(self, frame: Dict[str, Any], reply_types: tuple, timeout: float = 5.0) -> Dict[str, Any]:
        """A sideband query on the persistent connection, as the mpac agent does after HELLO."""
        start = len(self.sideband)
        await self.ws.send(json.dumps(frame))
        return await self.wait_for(lambda f: f.get('type') in reply_types, timeout, start, where='sideband')

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except asyncio.TimeoutError:
                self._task.cancel()


def is_error(frame: Dict[str, Any], code: Optional[str] = None) -> bool:
    if frame.get('message_type') != 'PROTOCOL_ERROR':
        return False
    return code is None or (frame.get('payload') or {}).get('error_code') == code


def error_code(frame: Dict[str, Any]) -> Optional[str]:
    return (frame.get('payload') or {}).get('error_code') if frame.get('message_type') == 'PROTOCOL_ERROR' else None


def websockets_version() -> str:
    return getattr(websockets, '__version__', 'unknown') if websockets is not None else 'missing'


def env_token(name: str) -> Optional[str]:
    tokens = json.loads(os.environ.get('INTEROP_TOKENS', '{}'))
    return tokens.get(name)
