import { execFileSync } from 'node:child_process'
import { cpSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import type { Server } from 'node:http'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nix, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { runCli, runCliAsync, startGatewayProcess, tmp } from '../helpers/cli.js'
import { serveFiles as serve, type Fault } from '../helpers/http.js'

// Upstream binary caches made by real Nix (`nix copy --to file://…?compression=…`)
// behind a loopback HTTP server that can also misbehave on purpose.
const salt = `${Date.now()}-${process.pid}`
const EXPR = `
let lib = ${shellDerivation(`import-lib-${salt}`, 'mkdir -p $out/lib; i=0; while [ $i -lt 30000 ]; do echo "line $i of a library ' + salt + '"; i=$((i+1)); done > $out/lib/big.txt')};
in ${shellDerivation(`import-top-${salt}`, 'mkdir -p $out/bin; echo ${lib} > $out/bin/ref; printf "#!/bin/sh\\n" > $out/bin/run; chmod +x $out/bin/run')}
`
describe.runIf(nixAvailable)('nixipfs import from HTTP binary caches', () => {
  let top: string
  let lib: string
  let pub: string
  let secret: string
  const caches: Record<string, string> = {}
  const servers: Server[] = []

  beforeAll(() => {
    ;[top] = nixBuild(EXPR) as [string]
    lib = execFileSync('nix-store', ['--query', '--references', top], { encoding: 'utf8' }).trim()
    const dir = tmp()
    secret = join(dir, 'upstream.secret')
    execFileSync('nix-store', ['--generate-binary-cache-key', 'upstream-1', secret, join(dir, 'upstream.public')])
    pub = readFileSync(join(dir, 'upstream.public'), 'utf8').trim()
    for (const compression of ['xz', 'zstd', 'bzip2', 'none']) {
      caches[compression] = tmp()
      nix(['copy', '--to', `file://${caches[compression]}?compression=${compression}&secret-key=${secret}`, top])
    }
  })
  afterAll(() => { for (const s of servers) s.close() })
  const upstream = async (root: string, faults = new Map<string, Fault>()): Promise<string> => {
    const s = await serve(root, faults)
    servers.push(s.server)
    return s.url
  }
  const listed = (repo: string): string => runCli(['ls', '--repo', repo]).stdout

  for (const compression of ['xz', 'zstd', 'bzip2', 'none']) {
    it(`imports a closure from a ${compression} cache; real Nix substitutes it with the upstream's key; a second run skips it`, async () => {
      const url = await upstream(caches[compression]!)
      const repo = tmp()
      const r = await runCliAsync(['import', '--repo', repo, '--from', url, '--trust', pub, '-r', top])
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout + r.stderr).toContain('imported 2 path(s), 0 already there')
      const gw = await startGatewayProcess(['--repo', repo])
      try {
        const store = tmp()
        const copy = nix(['copy', '--from', gw.url, '--to', store, top, '--option', 'trusted-public-keys', pub], { allowFail: true })
        expect(copy.status, copy.stderr).toBe(0)
        for (const p of [top, lib]) expect(Buffer.compare(nixDump(p), nixDump(join(store, p)))).toBe(0)
      } finally {
        await gw.stop()
      }
      const again = await runCliAsync(['import', '--repo', repo, '--from', url, '--trust', pub, '-r', top])
      expect(again.stdout + again.stderr).toContain('imported 0 path(s), 2 already there')
    })
  }

  it('refuses a narinfo with a bad signature, and imports nothing', async () => {
    const root = tmp()
    cpSync(caches.none!, root, { recursive: true })
    const narinfo = join(root, `${top.slice(11, 43)}.narinfo`)
    writeFileSync(narinfo, readFileSync(narinfo, 'utf8').replace(/^Sig: (upstream-1:)(.)/m, (_m, k: string, c: string) => `Sig: ${k}${c === 'A' ? 'B' : 'A'}`))
    const repo = tmp()
    const r = await runCliAsync(['import', '--repo', repo, '--from', await upstream(root), '--trust', pub, '-r', top])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/has no valid signature by a trusted key \(upstream-1\); nothing was imported/)
    expect(listed(repo)).toBe('')
  })

  it('refuses a NAR that does not match its NarHash, a truncated download and a hanging upstream; keeps only whole paths; resumes', async () => {
    const root = tmp()
    cpSync(caches.none!, root, { recursive: true })
    const topNar = `/${/^URL: (\S+)$/m.exec(readFileSync(join(root, `${top.slice(11, 43)}.narinfo`), 'utf8'))![1]!}`
    const repo = tmp()
    const run = async (url: string): Promise<{ status: number, out: string }> => {
      const r = await runCliAsync(['import', '--repo', repo, '--from', url, '--trust', pub, '-r', '--timeout', '1', top])
      return { status: r.status, out: r.stdout + r.stderr }
    }
    // A flipped byte in the top path's NAR: the library (imported first, whole) stays, the top path does not land.
    const tampered = tmp()
    cpSync(root, tampered, { recursive: true })
    const file = join(tampered, topNar)
    const bytes = readFileSync(file)
    bytes[bytes.length - 20]! ^= 1
    writeFileSync(file, bytes)
    const bad = await run(await upstream(tampered))
    expect(bad.status).toBe(1)
    // Caught by the structure check or the NarHash, whichever the flipped byte breaks first.
    expect(bad.out).toMatch(/the NAR from .* (is \d+ bytes with sha256:\S+, its narinfo says .* \(truncated or tampered\)|is not a valid NAR: .*); it was not imported/)
    expect(listed(repo), bad.out).toContain(lib)
    expect(listed(repo)).not.toContain(top)

    const truncated = await run(await upstream(root, new Map([[topNar, 'truncate']])))
    expect(truncated.status).toBe(1)
    expect(truncated.out).toMatch(/download broke off|truncated or tampered/)
    expect(listed(repo)).not.toContain(top)

    const hanging = await run(await upstream(root, new Map([[topNar, 'hang']])))
    expect(hanging.status).toBe(1)
    expect(hanging.out).toMatch(/ERR_UPSTREAM_NETWORK/)
    expect(listed(repo)).not.toContain(top)

    // A healthy upstream: the import completes, the library is not fetched again.
    const fine = await run(await upstream(root))
    expect(fine.status, fine.out).toBe(0)
    expect(fine.out).toContain('imported 1 path(s), 1 already there')
    expect(readdirSync(join(repo, 'records'))).toHaveLength(1)
  })
})
