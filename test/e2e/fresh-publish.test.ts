import { readdirSync, watch } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'
import { runCli, runCliAsync, startGatewayProcess, tmp } from '../helpers/cli.js'

const salt = `${Date.now()}-${process.pid}`
const hashOf = (path: string): string => path.slice('/nix/store/'.length, '/nix/store/'.length + 32)

describe.runIf(nixAvailable)('a path published while the gateway runs', () => {
  // Found by an outside test: the gateway looked at the record at most every 500 ms, so a path asked for just after
  // its publish was a 404, which Nix keeps in its narinfo disk cache for an hour (narinfo-cache-negative-ttl).
  it('is served at once: a miss looks at the stored record again before it answers 404', async () => {
    const [first, second] = nixBuild(`[ (${shellDerivation(`fresh-a-${salt}`, 'echo a > $out')}) (${shellDerivation(`fresh-b-${salt}`, 'echo b > $out')}) ]`) as [string, string]
    const repo = tmp()
    expect(runCli(['publish', '--repo', repo, first]).status).toBe(0)
    const gw = await startGatewayProcess(['--repo', repo])
    try {
      expect((await fetch(`${gw.url}/${hashOf(second)}.narinfo`)).status).toBe(404)
      // Nix asking for other paths all the while keeps the gateway's last look at the record recent.
      let asking = true
      const others = (async () => { while (asking) { await (await fetch(`${gw.url}/${'0'.repeat(32)}.narinfo`)).arrayBuffer(); await new Promise(resolve => setTimeout(resolve, 10)) } })()
      const records = join(repo, 'records')
      const [record] = readdirSync(records).filter(f => f.endsWith('.ipns'))
      // Asked the moment the new record is in place (renamed over the old one).
      const status = new Promise<number>((resolve, reject) => {
        const watcher = watch(records, (_event, file) => {
          if (file !== record) return
          watcher.close()
          fetch(`${gw.url}/${hashOf(second)}.narinfo`).then(r => resolve(r.status), reject)
        })
      })
      const published = await runCliAsync(['publish', '--repo', repo, second])
      expect(published.status, published.stderr).toBe(0)
      expect(await status).toBe(200)
      asking = false
      await others
    } finally {
      await gw.stop()
    }
  }, 30_000)
})
