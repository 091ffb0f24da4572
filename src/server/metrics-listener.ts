import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { METRICS_TYPE } from './app.js'
import type { Metrics } from './metrics.js'
import { HTTP_ERRORS, httpErrorBody } from './http-errors.js'

/**
 * `--metrics-port`: a second HTTP listener on 127.0.0.1 that serves only
 * `GET /metrics`, without a token (issue 11.4). Loopback only, so only
 * processes of this machine (a node exporter, a sidecar agent) can scrape it;
 * the main listener keeps requiring MPAC_METRICS_TOKEN.
 */
export interface MetricsListener {
  readonly port: number
  close (): Promise<void>
}

export async function listenMetrics (metrics: Metrics, port: number): Promise<MetricsListener> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify(httpErrorBody(HTTP_ERRORS.NOT_FOUND, 'this listener serves GET /metrics only')))
      return
    }
    res.writeHead(200, { 'content-type': METRICS_TYPE }).end(metrics.render())
  })
  server.headersTimeout = 10_000
  server.requestTimeout = 30_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port }, () => { server.off('error', reject); resolve() })
  })
  server.unref()
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}
