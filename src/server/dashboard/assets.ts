/**
 * The dashboard's two static files, embedded as strings and served at
 * content-hashed URLs (cached for a year; a new build gets new URLs), so the
 * pages need no inline script or style (CSP `script-src 'self'; style-src
 * 'self'`). The client script enhances a server-rendered page: it opens the
 * SSE stream (docs/dashboard.md, "Live updates"), applies snapshot and delta
 * patches to the elements marked `data-section` / `data-key` / `data-field`
 * with `textContent` only (never markup), announces updates in the one
 * polite live region, and offers the Pause control. It never moves focus or
 * scrolls.
 */
import { createHash } from 'node:crypto'

export const DASHBOARD_CSS = `
:root { color-scheme: light dark; --fg: #1b1b1b; --bg: #ffffff; --muted: #4a4a4a; --line: #c8c8c8; --warn: #8a4b00; --bad: #a00000; --ok: #1d6b2a; --focus: #0b57d0; }
@media (prefers-color-scheme: dark) { :root { --fg: #ececec; --bg: #161616; --muted: #c2c2c2; --line: #555; --warn: #ffb860; --bad: #ff8a8a; --ok: #7ddc8c; --focus: #8ab4f8; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header, main, footer { padding: 0.5rem 1rem; }
header { border-bottom: 1px solid var(--line); display: flex; flex-wrap: wrap; gap: 1rem; align-items: baseline; }
h1 { font-size: 1.3rem; margin: 0.2rem 0; }
h2 { font-size: 1.1rem; margin: 1.2rem 0 0.4rem; }
nav ul { list-style: none; display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 0; padding: 0; }
a { color: var(--focus); }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
table { border-collapse: collapse; width: 100%; margin-bottom: 0.5rem; }
caption { text-align: left; font-weight: 600; padding: 0.3rem 0; }
th, td { border-bottom: 1px solid var(--line); padding: 0.25rem 0.4rem; text-align: left; vertical-align: top; }
/* state refs are 71 characters without a break: let them wrap rather than widen the page */
td[data-field^="state_ref"] { overflow-wrap: anywhere; min-width: 12ch; }
th { font-weight: 600; }
.muted, .empty { color: var(--muted); }
.state { font-weight: 600; white-space: nowrap; }
.state[data-state="ESCALATED"], .state[data-state="OPEN"], .state[data-state="SUSPENDED"], .state[data-state="offline"] { color: var(--warn); }
.state[data-state="REJECTED"], .state[data-state="revoked"] { color: var(--bad); }
.state[data-state="ACTIVE"], .state[data-state="COMMITTED"], .state[data-state="online"], .state[data-state="CLOSED"] { color: var(--ok); }
/* An icon besides the state's text (never the colour alone); hidden from assistive technology. */
.state[data-state]::before { content: "\\25CF\\00A0" / ""; }
.state[data-state="ESCALATED"]::before, .state[data-state="escalation"]::before { content: "\\25B2\\00A0" / ""; }
.state[data-state="SUSPENDED"]::before, .state[data-state="offline"]::before, .state[data-state="idle"]::before { content: "\\25CB\\00A0" / ""; }
.state[data-state="CLOSED"]::before, .state[data-state="COMMITTED"]::before, .state[data-state="DISMISSED"]::before { content: "\\2713\\00A0" / ""; }
.state[data-state="REJECTED"]::before, .state[data-state="frozen_scope"]::before { content: "\\2715\\00A0" / ""; }
.state[data-state=""]::before { content: none; }
#live-status { min-height: 1.4em; color: var(--muted); }
button { font: inherit; padding: 0.25rem 0.7rem; }
ol.timeline { padding-left: 1.2rem; }
form.login label { display: block; margin: 0.5rem 0 0.2rem; }
.error { color: var(--bad); font-weight: 600; }
@media (prefers-reduced-motion: reduce) { * { transition: none !important; animation: none !important; } }
`

export const DASHBOARD_JS = `(function () {
  'use strict'
  var root = document.querySelector('[data-dashboard-session]')
  if (!root || typeof window.EventSource !== 'function') return
  var sid = root.getAttribute('data-dashboard-session')
  var status = document.getElementById('live-status')
  var pause = document.getElementById('pause-live')
  var paused = false
  var held = []
  var lastSeq = 0
  var ring = null
  var main = document.getElementById('main')
  var onlyAgent = main ? main.getAttribute('data-filter-agent') || '' : ''
  var onlyFile = main ? main.getAttribute('data-filter-file') || '' : ''

  // The page's filter (a plain GET form; the server filtered the first rendering the same way).
  function kept (section, item) {
    if (section !== 'events' && section !== 'intents') return true
    if (onlyAgent && item.principal_id !== onlyAgent) return false
    if (!onlyFile) return true
    var files = section === 'events' ? (item.refs && item.refs.files) || [] : item.files || []
    return files.some(function (f) { return f.indexOf(onlyFile) >= 0 })
  }

  function setStatus (text) { if (status) status.textContent = text }
  function fmtRel (iso) {
    var t = Date.parse(iso)
    if (isNaN(t)) return iso
    var d = Math.round((t - Date.now()) / 1000)
    var a = Math.abs(d)
    var s = a < 60 ? a + ' s' : a < 3600 ? Math.round(a / 60) + ' min' : a < 86400 ? Math.round(a / 3600) + ' h' : Math.round(a / 86400) + ' d'
    return d === 0 ? 'now' : d < 0 ? s + ' ago' : 'in ' + s
  }
  function text (v, format) {
    if (v === null || v === undefined || v === '') return '—'
    if (format === 'bool') return v ? 'yes' : 'no'
    if (format === 'holders') return v.map(function (h) { return h.principal_id + ' (' + h.intent_id + ', ' + h.state + ')' }).join('; ')
    if (format === 'acks') return v.length === 0 ? '—' : v.map(function (a) { return a.principal_id + ': ' + a.ack_type }).join('; ')
    if (format === 'availability') return v ? 'online' : 'offline'
    if (Array.isArray(v)) return v.length === 0 ? '—' : v.join(', ')
    return String(v)
  }
  function fill (el, item) {
    var fields = el.querySelectorAll('[data-field]')
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i]
      var name = f.getAttribute('data-field')
      var v = item[name]
      var format = f.getAttribute('data-format')
      if (f.tagName === 'TIME') {
        if (v) { f.setAttribute('datetime', v); f.textContent = fmtRel(v) } else { f.removeAttribute('datetime'); f.textContent = '—' }
      } else if (f.tagName === 'A') {
        f.textContent = text(v, format)
        f.setAttribute('href', f.getAttribute('data-href-prefix') + encodeURIComponent(String(v)))
      } else {
        f.textContent = text(v, format)
      }
      if (f.hasAttribute('data-state')) f.setAttribute('data-state', format === 'availability' ? (v ? 'online' : 'offline') : String(v))
    }
  }
  function container (section) { return document.querySelector('[data-section="' + section + '"]') }
  function keyOf (section, item) {
    var c = container(section)
    return c ? String(item[c.getAttribute('data-key-field')]) : ''
  }
  function rowFor (c, key) {
    var rows = c.children
    for (var i = 0; i < rows.length; i++) if (rows[i].getAttribute('data-key') === key) return rows[i]
    return null
  }
  function newRow (section) {
    var tpl = document.querySelector('template[data-template="' + section + '"]')
    return tpl ? tpl.content.firstElementChild.cloneNode(true) : null
  }
  function emptyState (section) {
    var c = container(section)
    var e = document.querySelector('[data-empty-for="' + section + '"]')
    if (c && e) e.hidden = c.children.length > 0
  }
  function upsert (section, item, atTop) {
    var c = container(section)
    if (!c) return
    var key = keyOf(section, item)
    var row = rowFor(c, key)
    if (!kept(section, item)) {
      if (row) remove(section, key)
      return
    }
    if (!row) {
      row = newRow(section)
      if (!row) return
      row.setAttribute('data-key', key)
      if (atTop) c.insertBefore(row, c.firstChild); else c.appendChild(row)
    }
    fill(row, item)
    emptyState(section)
  }
  function remove (section, key) {
    var c = container(section)
    var row = c && rowFor(c, String(key))
    if (row) row.parentNode.removeChild(row)
    emptyState(section)
  }
  function replace (section, all) {
    var c = container(section)
    if (!c) return
    var items = all.filter(function (it) { return kept(section, it) })
    var keep = {}
    items.forEach(function (it) { keep[keyOf(section, it)] = true })
    Array.prototype.slice.call(c.children).forEach(function (r) { if (!keep[r.getAttribute('data-key')]) c.removeChild(r) })
    items.forEach(function (it) { upsert(section, it, false) })
    // Keep the server's order.
    items.forEach(function (it) { var r = rowFor(c, keyOf(section, it)); if (r) c.appendChild(r) })
    emptyState(section)
  }
  function setValues (section, obj) {
    var els = document.querySelectorAll('[data-set^="' + section + '."]')
    for (var i = 0; i < els.length; i++) {
      var name = els[i].getAttribute('data-set').slice(section.length + 1)
      els[i].textContent = text(obj[name], els[i].getAttribute('data-format'))
    }
  }
  function addEvents (events) {
    var c = container('events')
    events.forEach(function (e) {
      if (e.seq <= lastSeq) return
      lastSeq = e.seq
      if (c) {
        upsert('events', e, true)
        while (c.children.length > 200) c.removeChild(c.lastChild)
      }
    })
  }
  function applyPatch (patch) {
    patch.forEach(function (p) {
      if (p.op === 'upsert') upsert(p.section, p.item, false)
      else if (p.op === 'remove') remove(p.section, p.key)
      else if (p.op === 'replace') replace(p.section, p.items)
      else if (p.op === 'set') setValues(p.section, p.item)
    })
  }
  function applySnapshot (view) {
    if (view.ring !== ring) {
      // Another ring (the coordinator restarted): its events are numbered anew.
      ring = view.ring
      lastSeq = 0
      var tl = container('events')
      while (tl && tl.firstChild) tl.removeChild(tl.firstChild)
    }
    ['participants', 'intents', 'conflicts', 'commits', 'files', 'attention'].forEach(function (s) { if (view[s]) replace(s, view[s]) })
    ;['health', 'policies', 'totals'].forEach(function (s) { if (view[s]) setValues(s, view[s]) })
    var evs = (view.events || []).slice().reverse()
    addEvents(evs)
    var cap = document.querySelector('[data-set="captured_at"]')
    if (cap) cap.textContent = view.captured_at
  }
  function announce (events) {
    if (events.length === 0) return
    var parts = events.slice(-2).map(function (e) { return e.summary })
    setStatus(events.length + (events.length === 1 ? ' update: ' : ' updates: ') + parts.join('; '))
  }
  function handle (kind, data) {
    if (kind === 'snapshot') { applySnapshot(data); setStatus('Live: up to date') }
    else {
      var events = data.events || (data.event ? [data.event] : [])
      addEvents(events)
      applyPatch(data.patch || [])
      var cap = document.querySelector('[data-set="captured_at"]')
      if (cap && data.captured_at) cap.textContent = data.captured_at
      announce(events)
    }
  }
  function receive (kind) {
    return function (ev) {
      var data
      try { data = JSON.parse(ev.data) } catch (e) { return }
      if (paused) held.push([kind, data]); else handle(kind, data)
    }
  }
  if (pause) {
    pause.hidden = false
    pause.addEventListener('click', function () {
      paused = !paused
      pause.setAttribute('aria-pressed', paused ? 'true' : 'false')
      pause.textContent = paused ? 'Resume live updates' : 'Pause live updates'
      if (!paused) { var q = held; held = []; q.forEach(function (m) { handle(m[0], m[1]) }) }
      setStatus(paused ? 'Live updates paused' : 'Live updates resumed')
    })
  }
  // Relative times ("4 s ago") age while the page stays open; not while paused (WCAG 2.2.2).
  setInterval(function () {
    if (paused) return
    var times = document.querySelectorAll('main time[datetime]')
    for (var i = 0; i < times.length; i++) times[i].textContent = fmtRel(times[i].getAttribute('datetime'))
  }, 15000)
  var es = new EventSource('/dashboard/s/' + encodeURIComponent(sid) + '/events')
  es.addEventListener('snapshot', receive('snapshot'))
  es.addEventListener('delta', receive('delta'))
  es.addEventListener('idle', function () { setStatus('The session is idle (no agent connected); it updates when one connects') })
  es.addEventListener('revoked', function () {
    es.close()
    document.body.setAttribute('data-live', 'revoked')
    setStatus('Signed out: this access is no longer valid. Reload the page to sign in again.')
  })
  es.addEventListener('session_closed', function () {
    es.close()
    setStatus('The session was closed.')
  })
  es.addEventListener('error', function () {
    setStatus(es.readyState === 2 ? 'Live updates stopped; reload the page.' : 'Connection lost; reconnecting…')
  })
})()
`

function hashed (name: string, ext: string, body: string): { readonly url: string, readonly body: string } {
  const h = createHash('sha256').update(body).digest('base64url').slice(0, 12)
  return { url: `/dashboard/assets/${name}.${h}.${ext}`, body }
}

export const CSS_ASSET = hashed('dashboard', 'css', DASHBOARD_CSS)
export const JS_ASSET = hashed('dashboard', 'js', DASHBOARD_JS)
