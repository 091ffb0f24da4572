/**
 * The dashboard's server-rendered pages (agent-hooks-and-dashboard.md §9.2,
 * §9.5). They work without JavaScript; the client script (assets.ts) patches
 * the elements marked here. Every participant-supplied string goes through
 * `escapeHtml` (text and attribute values alike); there is no inline script
 * or style. Markup contract for the client (docs/dashboard.md): a keyed
 * list is an element with `data-section` and `data-key-field`, its rows
 * carry `data-key`, and a `<template data-template>` holds an empty row;
 * inside a row, `data-field` elements show one field (`data-format` says
 * how; `<time>` gets `datetime`; `data-state` mirrors the value for the
 * icon and colour, which never carry meaning alone); `data-set="section.
 * name"` elements show one value of an object section.
 */
import type { DashboardView, ViewConflict } from '../../coordinator/dashboard-view.js'
import { CSS_ASSET, JS_ASSET } from './assets.js'
import type { DashEvent } from './events.js'

const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

/** Text for HTML element content and quoted attribute values. */
export function escapeHtml (value: unknown): string {
  return String(value).replace(/[&<>"']/g, c => ESCAPES[c] as string)
}

const e = escapeHtml

export interface PageViewer {
  /** Show the sign-out form (token viewers). */
  readonly signedIn: boolean
  readonly label: string
}

function relative (iso: string | null | undefined, now: number): string {
  if (iso === null || iso === undefined) return '—'
  const t = Date.parse(iso)
  if (!Number.isFinite(t)) return iso
  const d = Math.round((t - now) / 1000)
  const a = Math.abs(d)
  const s = a < 60 ? `${a} s` : a < 3600 ? `${Math.round(a / 60)} min` : a < 86400 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`
  return d < 0 ? `${s} ago` : d === 0 ? 'now' : `in ${s}`
}

function time (iso: string | null | undefined, now: number, field?: string): string {
  const f = field === undefined ? '' : ` data-field="${e(field)}"`
  return iso === null || iso === undefined ? `<time${f}>—</time>` : `<time${f} datetime="${e(iso)}">${e(relative(iso, now))}</time>`
}

export function layout (title: string, body: string, viewer: PageViewer | undefined, extra: { sessionId?: string } = {}): string {
  const signOut = viewer?.signedIn === true
    ? '<form method="post" action="/dashboard/logout"><button type="submit">Sign out</button></form>'
    : ''
  const session = extra.sessionId === undefined ? '' : ` data-dashboard-session="${e(extra.sessionId)}"`
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${e(title)} · mpac dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${CSS_ASSET.url}">
<script src="${JS_ASSET.url}" defer></script>
</head>
<body${session}>
<header>
<p><a href="/dashboard">mpac dashboard</a></p>
${viewer === undefined ? '' : `<p class="muted">${e(viewer.label)}</p>`}
${signOut}
</header>
${body}
</body>
</html>
`
}

export function loginPage (error: string | undefined): string {
  const err = error === undefined ? '' : `<p class="error" role="alert">${e(error)}</p>`
  return layout('Sign in', `<main id="main">
<h1>Sign in to the dashboard</h1>
${err}
<form class="login" method="post" action="/dashboard/login">
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required size="40">
<p><button type="submit">Sign in</button></p>
</form>
<p class="muted">Use a token of the coordinator's token table that is valid for the sessions you want to see. It is sent once; the browser keeps only an opaque cookie.</p>
</main>`, undefined)
}

export function errorPage (status: number, code: string, message: string, viewer: PageViewer | undefined): string {
  return layout(`Error ${status}`, `<main id="main">
<h1>${e(message)}</h1>
<p class="muted">${e(code)} (HTTP ${status})</p>
<p><a href="/dashboard">All sessions</a></p>
</main>`, viewer)
}

export interface IndexRow {
  readonly sessionId: string
  readonly idle: boolean
  readonly online: number
  readonly participants: number
  readonly intents: number
  readonly conflicts: string
  readonly attention: number
  readonly lastActivity: string | null
}

export function indexPage (rows: readonly IndexRow[], total: number, viewer: PageViewer, now: number): string {
  const body = rows.map(r => `<tr data-key="${e(r.sessionId)}">
<th scope="row"><a href="/dashboard/s/${encodeURIComponent(r.sessionId)}">${e(r.sessionId)}</a></th>
<td class="state" data-state="${r.idle ? 'idle' : 'loaded'}">${r.idle ? 'idle (not loaded)' : 'active'}</td>
<td>${r.idle ? '—' : `${r.online} / ${r.participants}`}</td>
<td>${r.idle ? '—' : r.intents}</td>
<td>${r.idle ? '—' : e(r.conflicts)}</td>
<td>${r.idle ? '—' : r.attention}</td>
<td>${time(r.lastActivity, now)}</td>
</tr>`).join('\n')
  return layout('Sessions', `<main id="main">
<h1>Sessions</h1>
<p><a href="/dashboard">Refresh</a></p>
<table>
<caption>Sessions you may view${total > rows.length ? ` (first ${rows.length} of ${total})` : ''}</caption>
<thead><tr><th scope="col">Session</th><th scope="col">State</th><th scope="col">Online / participants</th><th scope="col">Live intents</th><th scope="col">Open conflicts</th><th scope="col">Attention items</th><th scope="col">Last activity</th></tr></thead>
<tbody>
${body}
</tbody>
</table>
${rows.length === 0 ? '<p class="empty">No session to show yet.</p>' : ''}
</main>`, viewer)
}

interface Column {
  readonly label: string
  readonly field: string
  readonly kind?: 'text' | 'time' | 'state' | 'link' | 'header'
  readonly format?: 'list' | 'holders' | 'acks' | 'bool' | 'availability'
  readonly hrefPrefix?: string
}

function cellText (v: unknown, format: Column['format']): string {
  if (v === null || v === undefined || v === '') return '—'
  if (format === 'bool') return v === true ? 'yes' : 'no'
  if (format === 'availability') return v === true ? 'online' : 'offline'
  if (format === 'holders') return (v as Array<{ principal_id: string, intent_id: string, state: string }>).map(h => `${h.principal_id} (${h.intent_id}, ${h.state})`).join('; ')
  if (format === 'acks') {
    const acks = v as Array<{ principal_id: string, ack_type: string }>
    return acks.length === 0 ? '—' : acks.map(a => `${a.principal_id}: ${a.ack_type}`).join('; ')
  }
  if (Array.isArray(v)) return v.length === 0 ? '—' : v.join(', ')
  if (typeof v === 'string') return v
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v)
  return JSON.stringify(v) ?? ''
}

function cell (c: Column, item: Record<string, unknown> | undefined, now: number): string {
  const v = item?.[c.field]
  const fmt = c.format === undefined ? '' : ` data-format="${c.format}"`
  const txt = item === undefined ? '' : e(cellText(v, c.format))
  switch (c.kind) {
    case 'time': return `<td>${item === undefined ? `<time data-field="${e(c.field)}"></time>` : time(v as string | null, now, c.field)}</td>`
    case 'state': {
      const state = item === undefined ? '' : c.format === 'availability' ? (v === true ? 'online' : 'offline') : String(v)
      return `<td class="state" data-field="${e(c.field)}"${fmt} data-state="${e(state)}">${txt}</td>`
    }
    case 'link': {
      const href = item === undefined ? '' : ` href="${e(`${c.hrefPrefix ?? ''}${encodeURIComponent(String(v))}`)}"`
      return `<td><a data-field="${e(c.field)}" data-href-prefix="${e(c.hrefPrefix ?? '')}"${href}>${txt}</a></td>`
    }
    case 'header': return `<th scope="row" data-field="${e(c.field)}"${fmt}>${txt}</th>`
    default: return `<td data-field="${e(c.field)}"${fmt}>${txt}</td>`
  }
}

function keyedTable (section: string, keyField: string, caption: string, columns: readonly Column[], items: ReadonlyArray<Record<string, unknown>>, total: number, now: number, emptyText: string): string {
  const head = columns.map(c => `<th scope="col">${e(c.label)}</th>`).join('')
  const rows = items.map(it => `<tr data-key="${e(String(it[keyField]))}">${columns.map(c => cell(c, it, now)).join('')}</tr>`).join('\n')
  const more = total > items.length ? ` (first ${items.length} of ${total})` : ''
  return `<table>
<caption>${e(caption)}${e(more)}</caption>
<thead><tr>${head}</tr></thead>
<tbody data-section="${e(section)}" data-key-field="${e(keyField)}">
${rows}
</tbody>
</table>
<p class="empty" data-empty-for="${e(section)}"${items.length > 0 ? ' hidden' : ''}>${e(emptyText)}</p>
<template data-template="${e(section)}"><tr>${columns.map(c => cell(c, undefined, now)).join('')}</tr></template>`
}

function timeline (events: readonly DashEvent[], now: number): string {
  const items = events.map(ev => `<li data-key="${ev.seq}">${time(ev.at, now, 'at')} <span data-field="summary">${e(ev.summary)}</span></li>`).join('\n')
  return `<ol class="timeline" reversed data-section="events" data-key-field="seq">
${items}
</ol>
<p class="empty" data-empty-for="events"${events.length > 0 ? ' hidden' : ''}>Nothing happened since the dashboard started watching this session.</p>
<template data-template="events"><li><time data-field="at"></time> <span data-field="summary"></span></li></template>`
}

const asRows = <T extends object>(list: readonly T[]): ReadonlyArray<Record<string, unknown>> => list as unknown as ReadonlyArray<Record<string, unknown>>

function definitionList (section: string, obj: Record<string, unknown>, labels: ReadonlyArray<[string, string]>): string {
  return `<dl>${labels.map(([k, label]) => `<dt>${e(label)}</dt><dd data-set="${e(section)}.${e(k)}">${e(cellText(obj[k], undefined))}</dd>`).join('')}</dl>`
}

/** The session page's filter (query `agent`, `file`): the timeline and the work, by agent and by path. */
export interface PageFilter { readonly agent: string, readonly file: string }

export function matchesFilter (f: PageFilter, principal: string | null, files: readonly string[] | undefined): boolean {
  if (f.agent !== '' && principal !== f.agent) return false
  return f.file === '' || (files ?? []).some(p => p.includes(f.file))
}

export function sessionPage (view: DashboardView, allEvents: readonly DashEvent[], viewer: PageViewer, now: number, version: string, filter: PageFilter = { agent: '', file: '' }): string {
  const sid = view.session_id
  const base = `/dashboard/s/${encodeURIComponent(sid)}`
  const events = allEvents.filter(ev => matchesFilter(filter, ev.principal_id, ev.refs.files))
  const intents = view.intents.filter(i => matchesFilter(filter, i.principal_id, i.files))
  const filtered = filter.agent !== '' || filter.file !== ''
  const body = `<nav aria-label="Sections"><ul>
<li><a href="#attention">Attention</a></li><li><a href="#participants">Participants</a></li><li><a href="#work">Work</a></li><li><a href="#files">Files</a></li><li><a href="#conflicts">Conflicts</a></li><li><a href="#commits">Recent commits</a></li><li><a href="#timeline">Timeline</a></li><li><a href="#health">Health</a></li>
</ul></nav>
<main id="main" data-filter-agent="${e(filter.agent)}" data-filter-file="${e(filter.file)}">
<h1>Session ${e(sid)}</h1>
<form method="get" action="${e(base)}" role="search" aria-label="Filter the work and the timeline">
<label for="filter-agent">Agent</label> <input id="filter-agent" name="agent" value="${e(filter.agent)}" size="16">
<label for="filter-file">Path contains</label> <input id="filter-file" name="file" value="${e(filter.file)}" size="24">
<button type="submit">Filter</button>${filtered ? ` <a href="${e(base)}">Clear the filter</a>` : ''}
</form>
<p>Captured <span data-set="captured_at">${e(view.captured_at)}</span> · <a href="${e(base)}">Refresh</a>${view.closed ? ' · <strong>this session is closed</strong>' : ''}</p>
<p id="live-status" role="status" aria-live="polite"></p>
<section aria-labelledby="attention"><h2 id="attention">Attention</h2>
${keyedTable('attention', 'id', 'What needs a person now', [
    { label: 'Kind', field: 'kind', kind: 'state' },
    { label: 'What', field: 'summary' },
    { label: 'Since', field: 'since', kind: 'time' },
    { label: 'Due', field: 'due_at', kind: 'time' }
  ], asRows(view.attention), view.totals.attention, now, 'Nothing needs attention.')}
</section>
<section aria-labelledby="participants"><h2 id="participants">Participants</h2>
${keyedTable('participants', 'principal_id', 'Participants', [
    { label: 'Participant', field: 'principal_id', kind: 'header' },
    { label: 'Name', field: 'display_name' },
    { label: 'Availability', field: 'is_available', kind: 'state', format: 'availability' },
    { label: 'Status', field: 'status' },
    { label: 'Roles', field: 'roles', format: 'list' },
    { label: 'Last seen', field: 'last_seen', kind: 'time' },
    { label: 'Live intents', field: 'live_intents' }
  ], asRows(view.participants), view.totals.participants, now, 'Nobody has joined.')}
</section>
<section aria-labelledby="work"><h2 id="work">Work</h2>
${keyedTable('intents', 'intent_id', 'Live intents', [
    { label: 'Intent', field: 'intent_id', kind: 'header' },
    { label: 'Owner', field: 'principal_id' },
    { label: 'Objective', field: 'objective' },
    { label: 'State', field: 'state', kind: 'state' },
    { label: 'Files', field: 'files', format: 'list' },
    { label: 'Since', field: 'created_at', kind: 'time' },
    { label: 'Expires', field: 'expires_at', kind: 'time' },
    { label: 'Claimed by', field: 'claimed_by' }
  ], asRows(intents), filtered ? intents.length : view.totals.intents, now, filtered ? 'No live intent matches the filter.' : 'No live intents.')}
</section>
<section aria-labelledby="files"><h2 id="files">Files</h2>
${keyedTable('files', 'path', 'Who holds which file', [
    { label: 'Directory', field: 'directory' },
    { label: 'Path', field: 'path', kind: 'header' },
    { label: 'Held by', field: 'holders', format: 'holders' }
  ], asRows(view.files), view.totals.files, now, 'No file is held.')}
</section>
<section aria-labelledby="conflicts"><h2 id="conflicts">Conflicts</h2>
${keyedTable('conflicts', 'conflict_id', 'Open and recently finished conflicts', [
    { label: 'Conflict', field: 'conflict_id', kind: 'link', hrefPrefix: `${base}/conflicts/` },
    { label: 'Category', field: 'category' },
    { label: 'Severity', field: 'severity' },
    { label: 'State', field: 'state', kind: 'state' },
    { label: 'Party A', field: 'principal_a' },
    { label: 'Party B', field: 'principal_b' },
    { label: 'Files', field: 'files', format: 'list' },
    { label: 'Acknowledged', field: 'acks', format: 'acks' },
    { label: 'Escalated to', field: 'escalated_to' },
    { label: 'Opened', field: 'created_at', kind: 'time' },
    { label: 'Due', field: 'resolution_due_at', kind: 'time' },
    { label: 'Frozen', field: 'frozen', format: 'bool' }
  ], asRows(view.conflicts), view.conflicts.length, now, 'No conflicts.')}
</section>
<section aria-labelledby="commits"><h2 id="commits">Recent commits</h2>
${keyedTable('commits', 'op_id', 'Recent commits, newest first', [
    { label: 'Operation', field: 'op_id', kind: 'header' },
    { label: 'By', field: 'principal_id' },
    { label: 'File', field: 'target' },
    { label: 'Outcome', field: 'outcome', kind: 'state' },
    { label: 'State ref before', field: 'state_ref_before' },
    { label: 'State ref after', field: 'state_ref_after' },
    { label: 'At', field: 'at', kind: 'time' }
  ], asRows(view.commits), view.totals.commits, now, 'No commits yet.')}
</section>
<section aria-labelledby="timeline"><h2 id="timeline">Timeline</h2>
<p><button type="button" id="pause-live" aria-pressed="false" hidden>Pause live updates</button></p>
${timeline(events, now)}
</section>
<section aria-labelledby="health"><h2 id="health">Health</h2>
${definitionList('health', view.health, [['session_health', 'Session health'], ['participants_online', 'Participants online'], ['epoch', 'Coordinator epoch'], ['lamport_clock', 'Lamport clock'], ['protocol_version', 'Protocol version']])}
${definitionList('policies', view.policies, [['security_profile', 'Security profile'], ['compliance_profile', 'Compliance profile'], ['execution_model', 'Execution model'], ['unavailability_timeout_sec', 'Unavailability timeout (s)'], ['resolution_timeout_sec', 'Resolution timeout (s)'], ['heartbeat_interval_sec', 'Heartbeat interval (s)'], ['intent_claim_grace_sec', 'Claim grace (s)']])}
<p class="muted">mpac-mcp ${e(version)}</p>
</section>
</main>`
  return layout(`Session ${sid}`, body, viewer, { sessionId: sid })
}

export function idlePage (sessionId: string, viewer: PageViewer): string {
  return layout(`Session ${sessionId}`, `<main id="main">
<h1>Session ${e(sessionId)}</h1>
<p class="state" data-state="idle">Idle: the session is stored but not loaded (no agent connected recently). Its state shows here once an agent connects.</p>
<p><a href="/dashboard/s/${encodeURIComponent(sessionId)}">Refresh</a> · <a href="/dashboard">All sessions</a></p>
</main>`, viewer)
}

export function conflictPage (sessionId: string, c: ViewConflict, events: readonly DashEvent[], viewer: PageViewer, now: number): string {
  const base = `/dashboard/s/${encodeURIComponent(sessionId)}`
  const row = (label: string, value: string): string => `<tr><th scope="row">${e(label)}</th><td>${value}</td></tr>`
  const t = (v: unknown): string => e(cellText(v, undefined))
  return layout(`Conflict ${c.conflict_id}`, `<nav aria-label="Breadcrumb"><ul><li><a href="${e(base)}">Session ${e(sessionId)}</a></li></ul></nav>
<main id="main">
<h1>Conflict ${e(c.conflict_id)}</h1>
<table>
<caption>The conflict</caption>
<tbody>
${row('State', `<span class="state" data-state="${e(c.state)}">${e(c.state)}</span>`)}
${row('Category', t(c.category))}
${row('Severity', t(c.severity))}
${row('Files', t(c.files))}
${row('Party A', `${t(c.principal_a)} · intent ${t(c.intent_a)}: ${t(c.objective_a)}`)}
${row('Party B', `${t(c.principal_b)} · intent ${t(c.intent_b)}: ${t(c.objective_b)}`)}
${row('Opened', time(c.created_at, now))}
${row('Acknowledged', e(cellText(c.acks, 'acks')))}
${row('Escalated to', `${t(c.escalated_to)}${c.escalated_at === null ? '' : ` (${time(c.escalated_at, now)})`}`)}
${row('Resolution due', time(c.resolution_due_at, now))}
${row('Scope frozen', c.frozen ? 'yes' : 'no')}
${row('Decision', `${t(c.decision)}${c.resolved_by === null ? '' : ` by ${t(c.resolved_by)}`}`)}
</tbody>
</table>
<h2>Its timeline</h2>
<ol class="timeline">
${events.map(ev => `<li>${time(ev.at, now)} ${e(ev.summary)}</li>`).join('\n')}
</ol>
${events.length === 0 ? '<p class="empty">No event of this conflict is in the dashboard\'s timeline.</p>' : ''}
</main>`, viewer)
}
