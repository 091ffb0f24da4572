import { pino, type DestinationStream, type Logger } from 'pino'

/**
 * The sidecar's pino logger: JSON lines, secrets redacted. Tokens never
 * reach a log call on purpose; the redaction is the second line of defence
 * (an `Authorization` header or a HELLO credential logged by accident).
 */
export function createLogger (level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { name: 'mpac-mcp-sidecar' },
    redact: {
      paths: [
        'req.headers.authorization',
        'headers.authorization',
        'authorization',
        '*.authorization',
        'credential',
        '*.credential',
        'payload.credential',
        '*.payload.credential',
        'token',
        '*.token'
      ],
      censor: '[redacted]'
    }
  }
  return destination === undefined ? pino(options) : pino(options, destination)
}
