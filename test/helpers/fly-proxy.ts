/**
 * A stub of Fly Proxy's documented `fly-replay` behaviour (fly.io "Dynamic
 * Request Routing"; "Return to sender: fallbacks for fly-replay"), enough to
 * test our side of the contract on loopback, not Fly itself:
 *
 * - a client's request (here a WebSocket upgrade) goes to a Machine the
 *   stub picks (`pick`, e.g. round robin);
 * - when that Machine answers with a `fly-replay: instance=<id>;…` header,
 *   the stub sends the same request to Machine `<id>`, adding
 *   `fly-replay-src: instance=<issuer>;state=<state>`; the replay response
 *   goes to the client;
 * - when the target cannot be connected to within `timeout=` and the header
 *   says `fallback=prefer_self`, the request goes back to the issuer with
 *   `fly-replay-failed` instead;
 * - any other response (101 included) is relayed, and after a 101 both
 *   sockets are spliced.
 *
 * Counts the replays per request, so tests can check "at most one, and none
 * when the first Machine is the owner".
 */
import { connect, createServer, type Server, type Socket } from 'node:net'

export interface FlyMachine { readonly id: string, readonly port: number }

export interface FlyProxyStub {
  readonly port: number
  /** Per accepted request: the Machines it was sent to, in order, and how many replays it took. */
  readonly routes: Array<{ readonly path: string, readonly machines: string[], replays: number }>
  close (): Promise<void>
}

function parseFields (value: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const part of value.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0) out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim()
  }
  return out
}

/** Reads one HTTP head (up to CRLFCRLF) from a socket; resolves with it and whatever bytes followed. */
function readHead (socket: Socket): Promise<{ head: string, rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk])
      const end = buf.indexOf('\r\n\r\n')
      if (end === -1) return
      socket.off('data', onData)
      socket.off('error', reject)
      socket.pause()
      resolve({ head: buf.subarray(0, end).toString('latin1'), rest: buf.subarray(end + 4) })
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.once('end', () => reject(new Error('closed before a full HTTP head')))
  })
}

function headerOf (head: string, name: string): string | undefined {
  const line = head.split('\r\n').find(l => l.toLowerCase().startsWith(`${name}:`))
  return line?.slice(name.length + 1).trim()
}

async function open (port: number, timeoutMs: number): Promise<Socket> {
  return await new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port })
    const timer = setTimeout(() => { s.destroy(); reject(new Error('connect timeout')) }, timeoutMs)
    s.once('connect', () => { clearTimeout(timer); resolve(s) })
    s.once('error', err => { clearTimeout(timer); reject(err) })
  })
}

export async function startFlyProxy (machines: readonly FlyMachine[], pick: (n: number) => number): Promise<FlyProxyStub> {
  const routes: FlyProxyStub['routes'] = []
  let count = 0
  const sockets = new Set<Socket>()
  const server: Server = createServer(client => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => client.destroy())
    void (async () => {
      const { head, rest } = await readHead(client)
      const path = head.split(' ')[1] ?? ''
      const route = { path, machines: [] as string[], replays: 0 }
      routes.push(route)
      let target = machines[pick(count++) % machines.length] as FlyMachine
      let extra = ''
      for (;;) {
        route.machines.push(target.id)
        let upstream: Socket
        try {
          upstream = await open(target.port, 2000)
        } catch {
          client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n')
          return
        }
        sockets.add(upstream)
        upstream.on('close', () => sockets.delete(upstream))
        upstream.write(head.replace('\r\n', `\r\n${extra}`) + '\r\n\r\n')
        if (rest.length > 0) upstream.write(rest)
        const res = await readHead(upstream)
        const replay = headerOf(res.head, 'fly-replay')
        if (replay === undefined || route.replays > 0) {
          // Relay the response; after a 101 (or anything else), splice both ways.
          client.write(res.head + '\r\n\r\n')
          if (res.rest.length > 0) client.write(res.rest)
          upstream.pipe(client)
          client.pipe(upstream)
          upstream.resume()
          client.resume()
          client.on('close', () => upstream.destroy())
          upstream.on('close', () => client.destroy())
          return
        }
        upstream.destroy()
        const fields = parseFields(replay)
        const next = machines.find(m => m.id === fields.instance)
        route.replays++
        const timeoutMs = /^(\d+)ms$/.test(fields.timeout ?? '') ? Number(/^(\d+)/.exec(fields.timeout as string)?.[1]) : Number(/^(\d+)s$/.exec(fields.timeout ?? '2s')?.[1] ?? 2) * 1000
        let reachable = next !== undefined
        if (next !== undefined) {
          try {
            (await open(next.port, timeoutMs)).destroy()
          } catch {
            reachable = false
          }
        }
        if (reachable && next !== undefined) {
          extra = `fly-replay-src: instance=${target.id};region=stub;t=${Date.now() * 1000};state=${fields.state ?? ''}\r\n`
          target = next
        } else if (fields.fallback === 'prefer_self' || fields.fallback === 'force_self') {
          extra = `fly-replay-failed: instance=${fields.instance ?? ''}\r\n`
        } else {
          client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n')
          return
        }
      }
    })().catch(() => { client.destroy() })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  return {
    port,
    routes,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}
