// Runs `tap build` after install so the tap plugin list in package.json
// (`!@tapjs/typescript`, `@tapjs/tsx`) takes effect. tap is a devDependency:
// on a production install (`npm ci --omit=dev`) it is absent and this does nothing.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const bin = join(root, 'node_modules', '.bin', process.platform === 'win32' ? 'tap.cmd' : 'tap')

if (!existsSync(bin)) {
  process.exit(0)
}

const result = spawnSync(bin, ['build'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' })
if (result.error) {
  throw result.error
}
process.exit(result.status ?? 1)
