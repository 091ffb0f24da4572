import { readFileSync } from 'node:fs'
import t from 'tap'
import { VERSION } from '../src/version.js'

t.test('VERSION matches package.json', async t => {
  const pkgUrl = new URL('../package.json', import.meta.url)
  const pkg = JSON.parse(readFileSync(pkgUrl, 'utf8')) as { version: string }
  t.equal(VERSION, pkg.version)
})
