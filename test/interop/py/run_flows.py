#!/usr/bin/env python3
"""Scripted Python-client flows against an MPAC coordinator.

Drives the flows the Python `mpac-mcp` bridge and the `mpac` participants run
(shared/docs/bridge.md §1.2, §7 smoke flows, §10 requirements), with the
wire behaviour of `mpac_client.py`, and prints one JSON line per check:

    {"check": "<name>", "ok": true|false, "detail": ...}

Exit code 0 when every check passed, 1 when one failed, 3 when
python3-websockets is missing.

    run_flows.py multi --url ws://127.0.0.1:PORT --session proj-a --other-session proj-b
        (tokens in $INTEROP_TOKENS: {"alice", "bob", "arbiter", "wild", "other"} -> token)
    run_flows.py workspace --url ws://127.0.0.1:PORT --workspace DIR
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import traceback
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mpac_client as mc  # noqa: E402

KNOWN_MESSAGE_TYPES = {
    'HELLO', 'SESSION_INFO', 'HEARTBEAT', 'GOODBYE', 'SESSION_CLOSE', 'COORDINATOR_STATUS',
    'INTENT_ANNOUNCE', 'INTENT_UPDATE', 'INTENT_WITHDRAW', 'INTENT_DEFERRED', 'INTENT_CLAIM',
    'INTENT_CLAIM_STATUS', 'OP_PROPOSE', 'OP_COMMIT', 'OP_BATCH_COMMIT', 'OP_REJECT', 'OP_SUPERSEDE',
    'CONFLICT_REPORT', 'CONFLICT_ACK', 'CONFLICT_ESCALATE', 'RESOLUTION', 'PROTOCOL_ERROR',
}
SUMMARY_KEYS = {'session_id', 'workspace_dir', 'captured_at', 'participant_count', 'active_intent_count',
                'open_conflict_count', 'participants', 'active_intents', 'open_conflicts'}
PARTICIPANT_KEYS = {'principal_id', 'display_name', 'roles', 'status', 'is_available', 'last_seen'}
INTENT_KEYS = {'intent_id', 'principal_id', 'objective', 'state', 'scope', 'claimed_by'}
CONFLICT_KEYS = {'conflict_id', 'category', 'severity', 'state', 'principal_a', 'principal_b', 'intent_a', 'intent_b'}


class Checks:
    def __init__(self) -> None:
        self.failed = 0
        self.names: set = set()

    def check(self, name: str, ok: Any, detail: Any = None) -> bool:
        if name in self.names:
            raise RuntimeError(f'duplicate check name {name!r}')
        self.names.add(name)
        ok = bool(ok)
        if not ok:
            self.failed += 1
        print(json.dumps({'check': name, 'ok': ok, 'detail': detail}, default=str, ensure_ascii=False), flush=True)
        return ok

    def eq(self, name: str, got: Any, want: Any) -> bool:
        return self.check(name, got == want, {'got': got, 'want': want})


class Bridge:
    """One bridge-like participant: persistent connection plus the bridge's id scheme and ownership."""

    def __init__(self, base: str, session: str, principal: str, name: str, token: Optional[str],
                 roles: Optional[List[str]] = None, header: bool = True, path: Optional[str] = None) -> None:
        self.uri = base + (path if path is not None else f'/session/{session}')
        self.session = session
        self.name = name.lower().replace(' ', '-')
        self.p = mc.Participant(principal, name, roles or ['contributor'], token=token)
        self.conn = mc.Connection(self.uri, self.p, session, send_header=header)
        self.owned: Dict[str, List[str]] = {}
        self.info: Optional[Dict[str, Any]] = None
        self.hello_ms: Optional[float] = None

    @property
    def pid(self) -> str:
        return self.p.principal_id

    def new_id(self, kind: str) -> str:
        return f'{kind}-{self.name}-{uuid.uuid4().hex[:8]}'

    async def join(self) -> Dict[str, Any]:
        await self.conn.open()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        # The bridge waits 2 s for SESSION_INFO (and carries on without it); a loaded CI machine gets 5 s here,
        # the measured latency goes into the check detail.
        self.info = await self.conn.hello(timeout=5.0)
        self.hello_ms = round((loop.time() - t0) * 1000, 1)
        return self.info

    async def begin_task(self, objective: str, files: List[str], scope: Optional[Dict[str, Any]] = None):
        files = sorted({f for f in files if f.strip()})
        intent_id = self.new_id('intent')
        scope = scope or {'kind': 'file_set', 'resources': files}
        reply = await self.conn.request(self.p.announce(self.session, intent_id, objective, scope))
        if not mc.is_error(reply):
            self.owned[intent_id] = files
        return intent_id, reply

    async def submit_change(self, intent_id: str, target: str, content: str, before: Optional[str],
                            op_id: Optional[str] = None):
        after = mc.state_ref(content)
        op_id = op_id or self.new_id('op')
        reply = await self.conn.request(self.p.commit(self.session, op_id, intent_id, target, before, after, content=content))
        return op_id, after, reply

    async def yield_task(self, intent_id: str, reason: str = 'yielded') -> Dict[str, Any]:
        self.owned.pop(intent_id, None)
        return await self.conn.request(self.p.withdraw(self.session, intent_id, reason))


def summary_shape_problems(s: Dict[str, Any]) -> List[str]:
    problems = []
    missing = SUMMARY_KEYS - set(s)
    if missing:
        problems.append(f'summary lacks {sorted(missing)}')
    for p in s.get('participants', []):
        if PARTICIPANT_KEYS - set(p):
            problems.append(f'participant {p.get("principal_id")} lacks {sorted(PARTICIPANT_KEYS - set(p))}')
    for i in s.get('active_intents', []):
        if INTENT_KEYS - set(i):
            problems.append(f'intent {i.get("intent_id")} lacks {sorted(INTENT_KEYS - set(i))}')
        elif not isinstance(i['scope'], dict) or 'kind' not in i['scope']:
            problems.append(f'intent {i.get("intent_id")} has no scope kind (check_overlap parses it)')
    for c in s.get('open_conflicts', []):
        if CONFLICT_KEYS - set(c):
            problems.append(f'conflict {c.get("conflict_id")} lacks {sorted(CONFLICT_KEYS - set(c))}')
    for k in ('participant_count', 'active_intent_count', 'open_conflict_count'):
        if not isinstance(s.get(k), int):
            problems.append(f'{k} is not an int')
    return problems


def intent_in(summary: Dict[str, Any], intent_id: str) -> Optional[Dict[str, Any]]:
    return next((i for i in summary.get('active_intents', []) if i.get('intent_id') == intent_id), None)


def conflict_in(summary: Dict[str, Any], conflict_id: str) -> Optional[Dict[str, Any]]:
    return next((c for c in summary.get('open_conflicts', []) if c.get('conflict_id') == conflict_id), None)


def brief(frame: Dict[str, Any]) -> Dict[str, Any]:
    return {'message_type': frame.get('message_type'), 'payload': frame.get('payload')}


def no_fraction_ts() -> str:
    return mc.py_ts(datetime.now(timezone.utc).replace(microsecond=0))


def envelope_report(c: Checks, conns: List[mc.Connection], label: str) -> None:
    frames = sum(len(x.protocol) for x in conns)
    errors = [e for x in conns for e in x.parse_errors]
    types = sorted({f.get('message_type') for x in conns for f in x.protocol})
    c.check(f'{label}: every protocol frame passed the strict PY envelope parser (ten keys, sender dataclass)',
            frames > 0 and not errors, {'frames': frames, 'connections': len(conns), 'errors': errors[:10], 'types': types})
    unknown = sorted(set(types) - KNOWN_MESSAGE_TYPES)
    c.check(f'{label}: every message_type received is an MPAC type', not unknown, {'unknown': unknown})
    bad_side = [f for x in conns for f in x.sideband if 'message_type' in f or 'type' not in f]
    c.check(f'{label}: sideband frames carry "type" and no "message_type" (the bridge drops them)', not bad_side,
            {'bad': bad_side[:3], 'sideband_types': sorted({f.get('type') for x in conns for f in x.sideband})})


# --------------------------------------------------------------------------
# multi-session server with a token table
# --------------------------------------------------------------------------

async def multi(c: Checks, base: str, session: str, other: str) -> None:
    tok = {k: mc.env_token(k) for k in ('alice', 'bob', 'arbiter', 'wild', 'other')}
    url = f'{base}/session/{session}'
    conns: List[mc.Connection] = []

    # -- the bridge's probe before anyone joined (remote mode, pinned) --------------------------
    s0 = await mc.fetch_session_summary(url, session, tok['alice'])
    c.check('probe: SESSION_SUMMARY answered as the first frame within 2 s, pinned session id matches',
            s0.get('session_id') == session, s0)
    c.check('probe: summary has the keys who_is_working reads', not summary_shape_problems(s0), summary_shape_problems(s0))

    # -- joins: bridge style (header + credential) and mpac Participant style (credential only) ---
    alice = Bridge(base, session, 'agent:bridge-alice', 'BridgeAlice', tok['alice'])
    bob = Bridge(base, session, 'agent:Bob', 'Bob', tok['bob'], header=False)
    arb = Bridge(base, session, 'agent:bridge-arbiter', 'BridgeArbiter', tok['arbiter'])
    for b in (alice, bob, arb):
        conns.append(b.conn)
    info = await alice.join()
    hello_value = alice.p.clock.value
    pl = info.get('payload') or {}
    c.check('hello (bridge style, header + credential): answered by SESSION_INFO', info.get('message_type') == 'SESSION_INFO',
            {'message_type': info.get('message_type'), 'latency_ms': alice.hello_ms, 'bridge_waits_ms': 2000})
    c.check('hello: SESSION_INFO fields as PY sends them', pl.get('session_id') == session and pl.get('protocol_version') == '0.1.13'
            and pl.get('security_profile') == 'authenticated' and pl.get('execution_model') == 'post_commit'
            and pl.get('state_ref_format') == 'sha256' and pl.get('watermark_kind') == 'lamport_clock'
            and pl.get('identity_method') == 'bearer_token' and pl.get('identity_verified') is True, pl)
    c.eq('hello: token roles granted (contributor)', pl.get('granted_roles'), ['contributor'])
    c.check('hello: envelope version 0.1.13, coordinator_epoch 1, coordinator sender',
            info.get('version') == '0.1.13' and info.get('coordinator_epoch') == 1
            and info['sender']['principal_id'] == f'service:coordinator-{session}'
            and info['sender']['principal_type'] == 'service', {k: info.get(k) for k in ('version', 'coordinator_epoch', 'sender')})
    wm = (info.get('watermark') or {}).get('value')
    c.check('hello: SESSION_INFO watermark is an int above the HELLO value (Lamport receive rule)',
            isinstance(wm, int) and wm > hello_value, {'session_info': wm, 'hello': hello_value})
    info_b = await bob.join()
    c.eq('hello (Participant style, credential only, no header): admitted', info_b.get('message_type'), 'SESSION_INFO')
    info_arb = await arb.join()
    c.eq('hello: arbiter token roles replace the requested contributor role', (info_arb.get('payload') or {}).get('granted_roles'), ['arbiter'])

    hb = await bob.conn.request(bob.p.heartbeat(session, ts=no_fraction_ts()))
    c.check('heartbeat: ts without a fraction (isoformat with microsecond 0) is accepted in the authenticated profile',
            not mc.is_error(hb), brief(hb))

    # mpac agent: sideband on the persistent connection after HELLO (no header on this one)
    fl = await bob.conn.sideband_request({'type': 'FILE_LIST'}, ('FILE_LIST_RESPONSE',))
    c.check('agent: FILE_LIST on the admitted persistent connection answers FILE_LIST_RESPONSE',
            isinstance(fl.get('files'), list), fl)

    # -- milestone0 / smoke_tools: race lock --------------------------------------------------
    a1, r = await alice.begin_task('Refactor the app entry point', ['src/app.py'])
    c.check('race: first begin_task accepted (no PROTOCOL_ERROR, relay of own announce)',
            r.get('message_type') == 'INTENT_ANNOUNCE' and r.get('message_id') is not None, brief(r))
    b1, r = await bob.begin_task('Also edit the entry point', ['src/app.py'])
    c.eq('race: second begin_task on the same file -> PROTOCOL_ERROR STALE_INTENT', mc.error_code(r), 'STALE_INTENT')
    desc = (r.get('payload') or {}).get('description', '')
    m = mc.STALE_INTENT_HOLDER.search(desc)
    c.check('race: description regex "by intent <id> (principal <pid>)" names the holder',
            m is not None and m.group('intent') == a1 and m.group('principal') == alice.pid, {'description': desc})
    c.check("race: description starts with the Python list repr of the files",
            desc.startswith("Files ['src/app.py'] are already being modified"), desc)
    hb = await bob.conn.request(bob.p.heartbeat(session))
    c.check('race: the loser stays connected and usable', not mc.is_error(hb) and bob.conn.closed is None, brief(hb))
    s = await mc.fetch_session_summary(url, session, tok['bob'])
    holders = [i for i in s['active_intents'] if 'src/app.py' in (i.get('scope') or {}).get('resources', [])]
    c.check('race: summary has exactly one intent on the file (the holder), no conflict from the lock',
            [i['intent_id'] for i in holders] == [a1] and s['open_conflict_count'] == 0, s)
    overlaps = [i for i in s['active_intents'] if i['principal_id'] != bob.pid
                and i['scope'].get('kind') == 'file_set' and 'src/app.py' in i['scope'].get('resources', [])]
    c.check('check_overlap: the holder appears as an overlap from the summary', len(overlaps) == 1, overlaps)
    c.check('race: summary participants list the three joined principals',
            {alice.pid, bob.pid, arb.pid} <= {p['principal_id'] for p in s['participants']} and s['participant_count'] >= 3,
            [p['principal_id'] for p in s['participants']])
    r = await alice.yield_task(a1)
    c.check('withdraw: yield_task relays INTENT_WITHDRAW', r.get('message_type') == 'INTENT_WITHDRAW', brief(r))
    b2, r = await bob.begin_task('Edit the entry point after the holder left', ['src/app.py'])
    c.check('withdraw: the lock is released, the same file can be announced', not mc.is_error(r), brief(r))
    await bob.yield_task(b2)

    # -- entity_set conflict and governance (smoke_governance) ---------------------------------
    a_ent, r = await alice.begin_task('Migrate the users table', [], scope={'kind': 'entity_set', 'entities': ['db.users']})
    c.check('conflict: entity_set announce accepted', not mc.is_error(r), brief(r))
    start_a = len(alice.conn.protocol)
    b_ent, r = await bob.begin_task('Add a column to users', [], scope={'kind': 'entity_set', 'entities': ['db.users']})
    c.check('conflict: overlapping entity_set announce is not race-locked (PY: only resources lock)', not mc.is_error(r), brief(r))
    ann_id = r.get('message_id')
    want = lambda f: f.get('message_type') == 'CONFLICT_REPORT' and (f.get('payload') or {}).get('intent_b') == a_ent  # noqa: E731
    rep_b = await bob.conn.wait_for(want)
    rep_a = await alice.conn.wait_for(want, start=start_a)
    cp = rep_b['payload']
    c.check('conflict: CONFLICT_REPORT reaches both principals', rep_a['payload'].get('conflict_id') == cp.get('conflict_id'), cp)
    at_alice = [f.get('message_id') if f.get('message_id') == ann_id else f.get('message_type') for f in alice.conn.protocol[start_a:]
                if f.get('message_id') == ann_id or want(f)]
    c.eq('frame order: the peer gets the INTENT_ANNOUNCE relay before the CONFLICT_REPORT about it (protocol.md §11.4)',
         at_alice, [ann_id, 'CONFLICT_REPORT'])
    c.check('conflict: intent_a/principal_a is the new side, intent_b/principal_b the existing one',
            cp.get('intent_a') == b_ent and cp.get('principal_a') == bob.pid and cp.get('principal_b') == alice.pid, cp)
    c.check('conflict: category scope_overlap, severity medium, conflict_id string',
            cp.get('category') == 'scope_overlap' and cp.get('severity') == 'medium' and isinstance(cp.get('conflict_id'), str), cp)
    cid = cp['conflict_id']
    s = await mc.fetch_session_summary(url, session, tok['alice'])
    oc = conflict_in(s, cid)
    c.check('conflict: summary open_conflicts lists it with the PY keys', oc is not None and not summary_shape_problems(s)
            and oc.get('intent_a') == b_ent and oc.get('intent_b') == a_ent and oc.get('state') == 'OPEN', oc)

    ack = bob.p.ack(session, cid, 'seen')
    ack['payload']['position'] = 'Bob would rather add the column after the migration'  # as the family-trip demo's agents do
    start_ack = len(alice.conn.protocol)
    r = await bob.conn.request(ack)
    c.check('ack_conflict: CONFLICT_ACK with an extra payload key (position) accepted and relayed', r.get('message_type') == 'CONFLICT_ACK', brief(r))
    relay = await alice.conn.wait_for(lambda f: f.get('message_id') == ack['message_id'], start=start_ack)
    c.eq('ack_conflict: the relay to the peer carries only the known payload keys', sorted(relay.get('payload') or {}), ['ack_type', 'conflict_id'])
    s = await mc.fetch_session_summary(url, session, tok['alice'])
    c.eq('ack_conflict: state ACKED in the summary', (conflict_in(s, cid) or {}).get('state'), 'ACKED')

    r = await alice.conn.request(alice.p.resolve(session, cid, 'approved', 'I am only a contributor'))
    c.eq('resolve_conflict: a contributor token -> AUTHORIZATION_FAILED', mc.error_code(r), 'AUTHORIZATION_FAILED')

    arbiters = [p for p in s['participants'] if 'arbiter' in (p.get('roles') or []) and p.get('is_available')]
    c.check('escalate_conflict: the summary yields a unique available arbiter (the bridge picks it)',
            [p['principal_id'] for p in arbiters] == [arb.pid], [(p['principal_id'], p.get('roles'), p.get('is_available')) for p in s['participants']])
    r = await alice.conn.request(alice.p.escalate(session, cid, arb.pid, 'needs a decision'))
    c.check('escalate_conflict: CONFLICT_ESCALATE relayed', r.get('message_type') == 'CONFLICT_ESCALATE', brief(r))
    s = await mc.fetch_session_summary(url, session, tok['alice'])
    c.eq('escalate_conflict: state ESCALATED in the summary', (conflict_in(s, cid) or {}).get('state'), 'ESCALATED')
    r = await arb.conn.request(arb.p.resolve(session, cid, 'approved', 'Bob adds the column after the migration'))
    c.check('resolve_conflict: the arbiter token resolves (RESOLUTION without resolution_id, as PY sends it)',
            r.get('message_type') == 'RESOLUTION', brief(r))
    s = await mc.fetch_session_summary(url, session, tok['alice'])
    c.check('resolve_conflict: remaining_conflict is null (gone from open_conflicts)', conflict_in(s, cid) is None, s['open_conflicts'])
    r = await arb.conn.request(arb.p.resolve(session, cid, 'rejected', 'again'))
    c.eq('resolve_conflict: a second resolution -> RESOLUTION_CONFLICT', mc.error_code(r), 'RESOLUTION_CONFLICT')

    # a participant-sent CONFLICT_REPORT in the PY shape (principal_a/b, intent_a/b; no related_intents, no basis)
    pcid = str(uuid.uuid4())
    py_report = bob.p.envelope('CONFLICT_REPORT', session, {
        'conflict_id': pcid, 'category': 'semantic_goal_conflict', 'severity': 'low',
        'principal_a': bob.pid, 'principal_b': alice.pid, 'intent_a': b_ent, 'intent_b': a_ent})
    r = await bob.conn.request(py_report)
    c.check('report_conflict: a PY-shaped participant CONFLICT_REPORT is accepted', not mc.is_error(r), brief(r))
    s = await mc.fetch_session_summary(url, session, tok['alice'])
    pc = conflict_in(s, pcid)
    c.check('report_conflict: listed with intent_a/intent_b from the PY fields',
            pc is not None and pc.get('intent_a') == b_ent and pc.get('intent_b') == a_ent, pc)
    start_a = len(alice.conn.protocol)
    await alice.yield_task(a_ent)
    await bob.yield_task(b_ent)
    dis = await alice.conn.wait_for(lambda f: f.get('message_type') == 'RESOLUTION'
                                    and (f.get('payload') or {}).get('conflict_id') == pcid, start=start_a)
    c.eq('report_conflict: auto-dismissed once both intents ended', (dis.get('payload') or {}).get('decision'), 'dismissed')

    # -- smoke_commit in a multi-session (initially empty) workspace --------------------------
    target = 'docs/notes.md'
    ci, r = await alice.begin_task('Write the notes', [target])
    st = await mc.fetch_file_state(url, target, tok['alice'])
    c.check('get_file_state: a file that does not exist -> FILE_ERROR "File not found" (status missing)',
            st.get('type') == 'FILE_ERROR' and st.get('path') == target and st.get('error') == 'File not found', st)
    start_b, side_b = len(bob.conn.protocol), len(bob.conn.sideband)
    op1, after1, r = await alice.submit_change(ci, target, 'hello a\n', None)
    c.check('submit_change: create with state_ref_before null -> success (relay, no error)',
            r.get('message_type') == 'OP_COMMIT' and not mc.is_error(r), brief(r))
    c.check('submit_change: state_ref_after is sha256:+16 hex of the UTF-8 text', after1 == 'sha256:448a19594af45f88', after1)
    st = await mc.fetch_file_state(url, target, tok['alice'])
    c.check('FILE_READ: sees the committed content and its ref',
            st.get('type') == 'FILE_CONTENT' and st.get('content') == 'hello a\n' and st.get('state_ref') == after1, st)
    relay = await bob.conn.wait_for(lambda f: f.get('message_type') == 'OP_COMMIT' and (f.get('payload') or {}).get('op_id') == op1, start=start_b)
    c.check('submit_change: the peer gets the OP_COMMIT relay without file_changes', 'file_changes' not in relay['payload'], brief(relay))
    upd = await bob.conn.wait_for(lambda f: f.get('type') == 'FILE_UPDATED' and f.get('path') == target, start=side_b, where='sideband')
    c.check('submit_change: the peer gets FILE_UPDATED {type, path, state_ref, updated_by}',
            upd.get('state_ref') == after1 and upd.get('updated_by') == alice.pid, upd)
    new = 'hello a\n<!-- edited by the interop test -->\n'
    op2, after2, r = await alice.submit_change(ci, target, new, after1)
    c.check('submit_change: edit with the current ref -> success', r.get('message_type') == 'OP_COMMIT', brief(r))
    st = await mc.fetch_file_state(url, target, tok['alice'])
    c.check('FILE_READ: new content, a different ref equal to state_ref(content)',
            st.get('content') == new and st.get('state_ref') == after2 and after2 != after1 and after2 == mc.state_ref(new), st)
    _, _, r = await alice.submit_change(ci, target, 'stale edit\n', after1)
    c.eq('submit_change: a stale state_ref_before -> PROTOCOL_ERROR STALE_STATE_REF (status stale)', mc.error_code(r), 'STALE_STATE_REF')
    c.check('submit_change: the STALE_STATE_REF refers to the commit and has a description',
            bool((r.get('payload') or {}).get('description')) and (r.get('payload') or {}).get('refers_to') is not None, brief(r))
    st = await mc.fetch_file_state(url, target, tok['alice'])
    c.eq('FILE_READ: a stale commit changed nothing', st.get('state_ref'), after2)
    r = await alice.conn.request(alice.p.commit(session, alice.new_id('op'), ci, target))
    c.check('commit_op: a Participant commit with null refs and no file_changes is accepted',
            r.get('message_type') == 'OP_COMMIT', brief(r))

    # MPACAgent names ops op-<name>-<file> and re-uses that id for its next task on the same file.
    agent_op = 'op-bridgealice-docs-notes-md'
    _, after3, r = await alice.submit_change(ci, target, new + 'task 1\n', after2, op_id=agent_op)
    c.check('agent op ids: first commit with op-<name>-<file> accepted', r.get('message_type') == 'OP_COMMIT', brief(r))
    _, after4, r = await alice.submit_change(ci, target, new + 'task 2\n', after3, op_id=agent_op)
    st = await mc.fetch_file_state(url, target, tok['alice'])
    c.check('agent op ids: a later commit re-using the same op_id is accepted and written (MPACAgent only detects STALE_STATE_REF)',
            r.get('message_type') == 'OP_COMMIT' and st.get('state_ref') == after4, {'reply': brief(r), 'file_ref': st.get('state_ref')})
    r = await alice.yield_task(ci)
    c.check('yield_task: ok', r.get('message_type') == 'INTENT_WITHDRAW', brief(r))

    # -- the bridge's query connections never get pushes ---------------------------------------
    qws = await mc.open_ws(url, tok['alice'])
    try:
        start_b = len(bob.conn.protocol)
        q1, _ = await alice.begin_task('Push some traffic', ['pushed.txt'])
        await alice.submit_change(q1, 'pushed.txt', 'x\n', None)
        await alice.yield_task(q1)
        await bob.conn.wait_for(lambda f: f.get('message_type') == 'COORDINATOR_STATUS', start=start_b)
        await qws.send(json.dumps({'type': 'SESSION_SUMMARY'}))
        first = json.loads(await asyncio.wait_for(qws.recv(), 2.0))
        c.eq('query connection: after relays, FILE_UPDATED and a COORDINATOR_STATUS went to participants, its first frame is still the reply',
             first.get('type'), 'SESSION_SUMMARY_RESPONSE')
    finally:
        await qws.close()
    cs = [f for f in bob.conn.protocol if f.get('message_type') == 'COORDINATOR_STATUS']
    c.check('COORDINATOR_STATUS heartbeats reach participants and carry event/coordinator_id/session_health',
            bool(cs) and all({'event', 'coordinator_id', 'session_health'} <= set(f['payload']) for f in cs), brief(cs[-1]) if cs else None)

    # -- smoke_takeover: GOODBYE transfer, then INTENT_CLAIM by claim_id -----------------------
    t_id, r = await alice.begin_task('Half-done work', ['src/lib.py'])
    c.check('takeover: the owner announces', not mc.is_error(r), brief(r))
    r = await alice.conn.request(alice.p.goodbye(session, 'completed', 'transfer', [t_id]))
    c.check('goodbye: reason "completed" (what the PY agent sends) with transfer is accepted', not mc.is_error(r), brief(r))
    await alice.conn.close()
    s = await mc.fetch_session_summary(url, session, tok['bob'])
    orig = intent_in(s, t_id)
    c.check('takeover: the summary shows the intent SUSPENDED and owned by the leaver',
            orig is not None and orig.get('state') == 'SUSPENDED' and orig.get('principal_id') == alice.pid, orig)
    claim_id, new_id = bob.new_id('claim'), f'intent-{bob.name}-claim-{uuid.uuid4().hex[:8]}'
    scope = {'kind': orig['scope']['kind'], 'resources': orig['scope'].get('resources')} if orig else {'kind': 'file_set', 'resources': ['src/lib.py']}
    start_arb = len(arb.conn.protocol)
    start_b = len(bob.conn.protocol)
    await bob.conn.send(bob.p.claim(session, claim_id, t_id, (orig or {}).get('principal_id', alice.pid), new_id,
                                    (orig or {}).get('objective') or 'Continue claimed work', scope, 'owner left'))
    status = await bob.conn.wait_for(lambda f: f.get('message_type') == 'INTENT_CLAIM_STATUS'
                                     and (f.get('payload') or {}).get('claim_id') == claim_id, timeout=3.0, start=start_b)
    sp = status['payload']
    await arb.conn.request(arb.p.heartbeat(session))  # the session is ordered: anything routed to the arbiter came before this echo
    bystander = any(f.get('message_type') == 'INTENT_CLAIM_STATUS' and (f.get('payload') or {}).get('claim_id') == claim_id
                    for f in arb.conn.protocol[start_arb:])
    c.check('takeover: INTENT_CLAIM_STATUS for this claim_id within 3 s, decision approved, new_intent_id echoed',
            sp.get('decision') == 'approved' and sp.get('new_intent_id') == new_id and sp.get('original_intent_id') == t_id,
            {'payload': sp, 'also_delivered_to_a_bystander': bystander})
    s = await mc.fetch_session_summary(url, session, tok['bob'])
    ni = intent_in(s, new_id)
    c.check('takeover: the summary lists the new intent, ACTIVE, owned by the claimer; the original is gone',
            ni is not None and ni.get('principal_id') == bob.pid and ni.get('state') == 'ACTIVE' and intent_in(s, t_id) is None,
            {'new': ni, 'original': intent_in(s, t_id)})
    bad_claim = bob.p.claim(session, bob.new_id('claim'), new_id, bob.pid, bob.new_id('intent'), 'x', scope)
    r = await bob.conn.request(bad_claim)
    c.eq('takeover: a claim on an intent that is not SUSPENDED -> INVALID_REFERENCE (refers_to the claim)', mc.error_code(r), 'INVALID_REFERENCE')
    r = await bob.yield_task(new_id)
    c.check('takeover: the claimer can yield the new intent', r.get('message_type') == 'INTENT_WITHDRAW', brief(r))

    # -- tokens: wrong session, wildcard, unknown, missing -------------------------------------
    eve = Bridge(base, session, 'agent:eve', 'Eve', tok['other'], header=False)
    conns.append(eve.conn)
    r = await eve.join()
    c.eq('tokens: a token for another session, in HELLO -> CREDENTIAL_REJECTED', mc.error_code(r), 'CREDENTIAL_REJECTED')
    c.eq('tokens: the rejection refers to the HELLO', (r.get('payload') or {}).get('refers_to'), eve.conn.hello_id)
    r = await eve.conn.request(eve.p.announce(session, eve.new_id('intent'), 'x', {'kind': 'file_set', 'resources': ['a.txt']}))
    c.eq('tokens: after a rejected HELLO, a begin_task gets INVALID_REFERENCE (HELLO-first gate)', mc.error_code(r), 'INVALID_REFERENCE')
    await eve.conn.close()
    try:
        ws = await mc.open_ws(url, tok['other'])
        await ws.close()
        got = 'upgrade accepted'
    except Exception as exc:  # websockets 10.4: InvalidStatusCode
        got = getattr(exc, 'status_code', None) or repr(exc)
    c.eq('tokens: the same token in the bridge\'s Authorization header is refused at the upgrade (HTTP 403; documented)', got, 403)
    eve2 = Bridge(base, other, 'agent:eve', 'Eve', tok['other'])
    conns.append(eve2.conn)
    r = await eve2.join()
    c.eq('tokens: that token is admitted in its own session', r.get('message_type'), 'SESSION_INFO')
    await eve2.conn.close()
    for sess in (session, other):
        w = Bridge(base, sess, f'agent:wild-{sess}', 'Wild', tok['wild'], roles=['participant'])
        conns.append(w.conn)
        r = await w.join()
        c.check(f'tokens: the wildcard token without roles is admitted in {sess} (granted contributor)',
                r.get('message_type') == 'SESSION_INFO' and (r.get('payload') or {}).get('granted_roles') == ['contributor'], brief(r))
        await w.conn.close()
    u = Bridge(base, session, 'agent:mallory', 'Mallory', 'tok-unknown-' + uuid.uuid4().hex, header=False)
    conns.append(u.conn)
    r = await u.join()
    c.eq('tokens: an unknown token in HELLO -> CREDENTIAL_REJECTED', mc.error_code(r), 'CREDENTIAL_REJECTED')
    await u.conn.close()
    n = Bridge(base, session, 'agent:nocred', 'NoCred', None, header=False)
    conns.append(n.conn)
    r = await n.join()
    c.eq('tokens: a HELLO without credential in the authenticated profile -> CREDENTIAL_REJECTED', mc.error_code(r), 'CREDENTIAL_REJECTED')
    await n.conn.close()
    try:
        await mc.query(url, {'type': 'SESSION_SUMMARY'})
        got = 'answered'
    except mc.QueryError as exc:
        got = str(exc)
    c.check('tokens: a probe without a token is refused (close 4401; documented, PY answered it)', '4401' in got, got)

    # -- a spec-conformant peer's optional envelope keys must not reach PY clients -------------
    # (its own session, so that the frame does not count against the aggregate parser check below)
    obs = Bridge(base, other, 'agent:py-observer', 'PyObserver', tok['wild'])
    spec = Bridge(base, other, 'agent:spec-client', 'SpecClient', tok['wild'])
    await obs.join()
    await spec.join()
    env = spec.p.announce(other, spec.new_id('intent'), 'a spec-conformant client', {'kind': 'file_set', 'resources': ['spec.txt']})
    env.update({'in_reply_to': str(uuid.uuid4()), 'trace_id': 'trace-1', 'extensions': {'vendor.example': {'x': 1}}})
    env['sender']['extensions'] = {'vendor.example': {}}
    r = await spec.conn.request(env)
    c.check('relay: a spec-conformant peer\'s announce with optional envelope keys is accepted', not mc.is_error(r), brief(r))
    relay = await obs.conn.wait_for(lambda f: f.get('message_id') == env['message_id'])
    try:
        mc.parse_envelope(relay)
        problem = None
    except mc.EnvelopeError as exc:
        problem = str(exc)
    c.check('relay: PY clients receive that relay with PY\'s envelope and sender keys only (protocol.md §2.1, §13.1 W3)',
            problem is None, {'error': problem, 'keys': sorted(relay), 'sender_keys': sorted(relay.get('sender') or {})})
    for b in (obs, spec):
        await b.conn.close()

    for b in (bob, arb):
        r = await b.conn.request(b.p.goodbye(session, 'completed'))
        c.check(f'goodbye: {b.pid} leaves with reason "completed"', not mc.is_error(r), brief(r))
        await b.conn.close()
    envelope_report(c, conns, 'multi')


# --------------------------------------------------------------------------
# single-session --workspace DIR (the bridge's local mode)
# --------------------------------------------------------------------------

async def workspace(c: Checks, base: str, wsdir: str) -> None:
    real = os.path.realpath(wsdir)
    sid = mc.derived_session_id(real)
    conns: List[mc.Connection] = []
    s = await mc.fetch_session_summary(base, sid)
    c.check('local probe: ws://host:port (no path) answers with the session id derived from the workspace path',
            s.get('session_id') == sid, {'got': s.get('session_id'), 'derived': sid})
    c.check('local probe: the summary names the workspace directory', s.get('workspace_dir') in (wsdir, real), s.get('workspace_dir'))
    s2 = await mc.fetch_session_summary(f'{base}/session/{sid}', sid)
    c.eq('remote-style URL /session/<derived id> reaches the same session', s2.get('session_id'), sid)
    try:
        await mc.fetch_session_summary(f'{base}/session/someone-else', 'someone-else')
        got = 'answered'
    except (mc.QueryError, Exception) as exc:  # closed 4004
        got = str(exc)
    c.check('a pinned URL naming another session gets no summary (close 4004; documented, PY ignored the path)', '4004' in got, got)

    readme = open(os.path.join(real, 'README.md'), encoding='utf-8').read()
    st = await mc.fetch_file_state(base, 'README.md')
    c.check('get_file_state: FILE_CONTENT of a real file with its content and sha256 ref',
            st.get('type') == 'FILE_CONTENT' and st.get('content') == readme and st.get('state_ref') == mc.state_ref(readme), st)
    st = await mc.fetch_file_state(base, 'nope.md')
    c.check('get_file_state: a missing file -> FILE_ERROR "File not found"', st.get('type') == 'FILE_ERROR' and st.get('error') == 'File not found', st)
    lst = await mc.query(base, {'type': 'FILE_LIST'})
    files = {f['path']: f for f in lst.get('files', [])}
    c.check('FILE_LIST: lists the text files with refs, skips node_modules and .git',
            lst.get('type') == 'FILE_LIST_RESPONSE' and {'README.md', 'src/app.py', 'src/emoji.txt'} <= set(files)
            and not any(p.startswith(('node_modules/', '.git/')) for p in files)
            and files['README.md'].get('state_ref') == mc.state_ref(readme), sorted(files))
    emoji = open(os.path.join(real, 'src', 'emoji.txt'), encoding='utf-8').read()
    c.eq('FILE_LIST: size is the length in characters (Python len) for non-BMP text', files.get('src/emoji.txt', {}).get('size'), len(emoji))

    # the mpac Participant default role, no credential (open profile, local mode has no token)
    worker = Bridge(base, sid, 'agent:bridge-worker', 'BridgeWorker', None, roles=['participant'], path='')
    conns.append(worker.conn)
    info = await worker.join()
    pl = info.get('payload') or {}
    c.check('hello: roles ["participant"] without credential is admitted in the open profile',
            info.get('message_type') == 'SESSION_INFO' and pl.get('security_profile') == 'open' and pl.get('granted_roles'),
            {'granted_roles': pl.get('granted_roles'), 'identity_verified': pl.get('identity_verified')})

    # smoke_commit against the real file
    i1, r = await worker.begin_task('Touch the README', ['README.md'])
    c.check('smoke_commit: begin_task ok', not mc.is_error(r), brief(r))
    st = await mc.fetch_file_state(base, 'README.md')
    new = st['content'] + '<!-- mpac-mcp interop -->\n'
    _, after, r = await worker.submit_change(i1, 'README.md', new, st['state_ref'])
    c.check('smoke_commit: submit_change with the real ref -> success', r.get('message_type') == 'OP_COMMIT', brief(r))
    st2 = await mc.fetch_file_state(base, 'README.md')
    c.check('smoke_commit: the file still exists with a different ref equal to state_ref(new content)',
            st2.get('state_ref') == after != st['state_ref'] and st2.get('content') == new, st2)
    on_disk = open(os.path.join(real, 'README.md'), encoding='utf-8').read()
    c.eq('smoke_commit: the commit is written through to the file on disk', on_disk, new)

    # an edit on disk outside MPAC, then a commit based on the session's previous ref
    edited = new + 'edited by hand\n'
    with open(os.path.join(real, 'README.md'), 'w', encoding='utf-8') as fh:
        fh.write(edited)
    st3 = await mc.fetch_file_state(base, 'README.md')
    c.check('FILE_READ: reads the real file after a local edit (content and ref)',
            st3.get('content') == edited and st3.get('state_ref') == mc.state_ref(edited), st3)
    _, _, r = await worker.submit_change(i1, 'README.md', new + 'mine\n', after)
    c.eq('submit_change: based on a ref the disk no longer has -> STALE_STATE_REF', mc.error_code(r), 'STALE_STATE_REF')
    c.eq('submit_change: the stale commit left the disk alone', open(os.path.join(real, 'README.md'), encoding='utf-8').read(), edited)

    text = 'h\u00e9llo \u2713 \U0001F600\n'
    _, after, r = await worker.submit_change(i1, 'src/unicode.txt', text, None)
    st4 = await mc.fetch_file_state(base, 'src/unicode.txt')
    c.check('unicode: a new non-ASCII file round-trips; its ref hashes the UTF-8 bytes',
            r.get('message_type') == 'OP_COMMIT' and st4.get('content') == text and st4.get('state_ref') == mc.state_ref(text) == after,
            {'reply': brief(r), 'read': st4})
    r = await worker.yield_task(i1)
    c.check('yield_task: ok', r.get('message_type') == 'INTENT_WITHDRAW', brief(r))
    s = await mc.fetch_session_summary(base, sid)
    c.eq('who_is_working: no active intents left', s.get('active_intent_count'), 0)

    # the unpinned bridge (URL without /session/<id>) sends its own derived id in every envelope
    stray = Bridge(base, 'mpac-local-elsewhere-0123456789', 'agent:unpinned', 'Unpinned', None, path='')
    conns.append(stray.conn)
    r = await stray.join()
    c.check('unpinned bridge: a single-session server admits a HELLO whose envelope session_id is not the served one '
            '(protocol.md §2.1: the check is for multi-session mode) and answers with the served id',
            isinstance(r, dict) and r.get('message_type') == 'SESSION_INFO' and r.get('session_id') == sid
            and (r.get('payload') or {}).get('session_id') == sid, brief(r))
    await stray.conn.close()

    r = await worker.conn.request(worker.p.goodbye(sid, 'completed'))
    c.check('goodbye: reason "completed" accepted', not mc.is_error(r), brief(r))
    await worker.conn.close()
    envelope_report(c, conns, 'workspace')


def parser_is_strict() -> bool:
    good = mc.Participant('agent:self-test', 'SelfTest').heartbeat('s')
    mc.parse_envelope(good)
    for mutate in (lambda e: e.update(in_reply_to='x'), lambda e: e['sender'].update(extensions={}),
                   lambda e: e.pop('sender'), lambda e: e.update(payload=[])):
        bad = json.loads(json.dumps(good))
        mutate(bad)
        try:
            mc.parse_envelope(bad)
            return False
        except mc.EnvelopeError:
            pass
    return True


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('mode', choices=['multi', 'workspace'])
    ap.add_argument('--url', required=True, help='ws://127.0.0.1:PORT (no path)')
    ap.add_argument('--session', default='proj-a')
    ap.add_argument('--other-session', default='proj-b')
    ap.add_argument('--workspace')
    args = ap.parse_args()
    c = Checks()
    if mc.websockets is None:
        c.check('python3-websockets is importable', False,
                f'{sys.executable} cannot import websockets; install it with: apt-get install -y python3-websockets')
        return 3
    c.check('python3-websockets is importable', True, {'websockets': mc.websockets_version(), 'python': sys.version.split()[0]})
    c.check('parser self-test: the strict PY envelope parser refuses extra envelope and sender keys', parser_is_strict())
    base = args.url.rstrip('/')
    try:
        if args.mode == 'multi':
            asyncio.run(asyncio.wait_for(multi(c, base, args.session, args.other_session), 40))
        else:
            asyncio.run(asyncio.wait_for(workspace(c, base, args.workspace), 40))
    except BaseException as exc:  # a failed step: report it as a check, keep the earlier lines
        c.check(f'{args.mode}: the scripted flow ran to the end', False,
                {'error': f'{type(exc).__name__}: {exc}', 'traceback': traceback.format_exc(limit=6)})
    else:
        c.check(f'{args.mode}: the scripted flow ran to the end', True)
    return 1 if c.failed else 0


if __name__ == '__main__':
    sys.exit(main())
