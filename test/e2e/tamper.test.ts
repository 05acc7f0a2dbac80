import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, readFileSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { flipPackedByte } from '../helpers/packs.js'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadRecord } from '../../src/cache/records.js'
import { loadRecordBytes } from '../../src/repo-layout.js'
import { ipnsNameOf, signRecord } from '../../src/ipfs/ipns.js'
import type { NarInfo } from '../../src/nix/narinfo.js'
import { formatPublicKey, generateSecretKey, parsePublicKey, parseSecretKey, publicKeyOf, type SecretKey } from '../../src/nix/signing.js'
import { parseStorePath } from '../../src/nix/store-path.js'
import { repoKeyPaths, writeKeyFiles } from '../../src/repo.js'
import { runAsync, runCli, runCliAsync, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'
import { hostilePeer, serveFiles, type PeerBehaviour } from '../helpers/http.js'
import { fakePath, signedCache } from '../helpers/cache.js'
import { nix, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { dirTokens, narOf } from '../nix/fixtures.js'

// The tamper matrix: one fault per row, real Nix as the client. Each row
// asserts what Nix sees (an error and no path, never wrong bytes — or, for
// refused records, the last good cache), what the gateway logs and which
// counter of GET /metrics moves. The table is printed at the end; the
// README's "Security and reliability" section quotes it.

const salt = `${Date.now()}-${process.pid}`
const P_EXPR = shellDerivation(`tamper-p-${salt}`, `mkdir -p $out; i=0; while [ $i -lt 40000 ]; do echo "line $i of a file of several blocks ${salt}"; i=$((i+1)); done > $out/data; ln -s data $out/link`)
const Q_EXPR = shellDerivation(`tamper-q-${salt}`, `mkdir -p $out; echo second ${salt} > $out/q`)

interface Row { fault: string, nix: string, log: string, counter: string }
const matrix: Row[] = []
const nodes: GatewayProcess[] = []
const closers: Array<() => void> = []

async function start (args: string[]): Promise<GatewayProcess> {
  const node = await startGatewayProcess(args)
  nodes.push(node)
  return node
}

/** `nix copy --from URL` of `path` into a fresh store, trusting `keys`, each call with its own narinfo cache. */
async function substitute (url: string, path: string, keys: string): Promise<{ status: number, stderr: string, store: string }> {
  const store = tmp()
  const r = await runAsync('nix', ['--extra-experimental-features', 'nix-command', 'copy', '--from', url, '--to', store, path,
    '--option', 'trusted-public-keys', keys, '--option', 'download-attempts', '1', '--option', 'substituters', ''], { XDG_CACHE_HOME: tmp() })
  return { ...r, store }
}

/** The sum of a metric's samples whose labels contain `label`. */
async function counter (url: string, name: string, label = ''): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith(name) && ' {'.includes(line[name.length]!) && line.includes(label)) sum += Number(line.split(' ').pop())
  }
  return sum
}

/** Waits until the gateway's output since `mark` has a line matching `re`; returns that line. */
async function logLine (gw: GatewayProcess, mark: number, re: RegExp, ms = 20_000): Promise<string> {
  for (let waited = 0; waited < ms; waited += 100) {
    const line = gw.output().slice(mark).split('\n').find(l => re.test(l))
    if (line !== undefined) return line.replace(/^.*?(\[\w+\]\s*)?(?=\S)/, '').trim()
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`no log line matching ${re} in:\n${gw.output().slice(mark)}`)
}

/** A table cell: addresses, CIDs, names and store hashes abbreviated. */
const terse = (text: string): string => text
  .replace(/http:\/\/127\.0\.0\.1:\d+/g, '…').replace(/\bbaf[a-z0-9]{50,}/g, '<cid>').replace(/\bk51[a-z0-9]{50,}/g, '<name>')
  .replace(/\/nix\/store\/[0-9a-z]{32}-/g, '/nix/store/…-').replace(/\b[0-9a-z]{32}\.narinfo/g, '….narinfo').replace(/\|/g, '\\|').slice(0, 220)

const nixError = (stderr: string): string => (stderr.split('\n').find(l => /error/.test(l)) ?? stderr.trim().split('\n').pop() ?? '').replace(/\s+/g, ' ').trim()

/**
 * One row where Nix must fail: the path never becomes valid in Nix's store,
 * Nix says `nixSays`, the log says `log`, and `metric` (name, label filter) goes up.
 */
async function refused (fault: string, gw: GatewayProcess, path: string, keys: string, log: RegExp | undefined, metric: [string, string] | undefined, nixSays: RegExp, check?: (store: string) => void): Promise<void> {
  const mark = gw.output().length
  const before = metric === undefined ? 0 : await counter(gw.url, ...metric)
  const r = await substitute(gw.url, path, keys)
  expect(r.status, `${fault}: nix copy should fail`).not.toBe(0)
  check?.(r.store)
  // Nix 2.8 restores into the store path as bytes arrive and leaves what it got when the download fails; the path is not valid.
  expect((await runAsync('nix-store', ['--store', r.store, '--check-validity', path])).status, `${fault}: the path must not become valid`).not.toBe(0)
  expect(r.stderr).toMatch(nixSays)
  const line = log === undefined ? '—' : await logLine(gw, mark, log)
  let moved = '—'
  if (metric !== undefined) {
    const after = await counter(gw.url, ...metric)
    expect(after, `${fault}: ${metric.join('')} should move`).toBeGreaterThan(before)
    moved = `${metric[0]}${metric[1] === '' ? '' : `{${metric[1]}}`} +${after - before}`
  }
  matrix.push({ fault, nix: nixError(r.stderr), log: line, counter: moved })
}

/** Substitutes `path` and checks the copy is byte-identical to the original. */
async function substitutes (url: string, path: string, keys: string): Promise<void> {
  const r = await substitute(url, path, keys)
  expect(r.status, r.stderr).toBe(0)
  expect((await runAsync('nix-store', ['--store', r.store, '--check-validity', path])).status).toBe(0)
  expect(Buffer.compare(nixDump(path), nixDump(join(r.store, path)))).toBe(0)
}


describe.runIf(nixAvailable)('tamper matrix, end to end with real Nix', () => {
  let p: string
  let q: string
  let builder: string
  let pubB: string
  let keyB: SecretKey
  let gB: GatewayProcess
  let indexed: string

  beforeAll(async () => {
    ;[p] = nixBuild(P_EXPR) as [string]
    ;[q] = nixBuild(Q_EXPR) as [string]
    builder = tmp()
    expect(runCli(['publish', '--repo', builder, p]).status).toBe(0)
    pubB = readFileSync(repoKeyPaths(builder).public, 'utf8').trim()
    keyB = parseSecretKey(readFileSync(repoKeyPaths(builder).secret, 'utf8'))
    gB = await start(['--repo', builder])
    // A client repo that already holds B's index (so only NAR blocks come from the peers below).
    indexed = tmp()
    const c = await startGatewayProcess(['--repo', indexed, '--follow', pubB, '--http-gateway', gB.url])
    await logLine(c, 0, /indexed root/)
    await c.stop()
  })

  afterAll(async () => {
    for (const close of closers) close()
    await Promise.all(nodes.map(async n => await n.stop()))
    const table = ['| fault | what Nix sees | what the gateway logs | counter |', '|---|---|---|---|',
      ...matrix.map(r => `| ${[r.fault, r.nix, r.log, r.counter].map(terse).join(' | ')} |`)]
    console.log(`tamper matrix: ${matrix.length} faults injected, 0 wrong bytes reached Nix\n${table.join('\n')}`)
  })

  it('a flipped byte in a stored block', async () => {
    const repo = tmp()
    cpSync(builder, repo, { recursive: true })
    flipPackedByte(repo, nixDump(p).subarray(300_000, 300_064))
    const gw = await start(['--repo', repo])
    await refused('a flipped byte in a stored block', gw, p, pubB, /is corrupt/, ['nixipfs_http_errors_total', 'code="ERR_INTEGRITY"'], /error/)
  })

  it('a pack file cut short on disk', async () => {
    const repo = tmp()
    cpSync(builder, repo, { recursive: true })
    const pack = join(repo, 'packs', readdirSync(join(repo, 'packs')).find(f => f.endsWith('.pack'))!)
    truncateSync(pack, Math.floor(statSync(pack).size * 0.6))
    const gw = await start(['--repo', repo])
    // The records past the pack's end are dropped when the store opens: their blocks are missing, not misread.
    await refused('a pack file cut short on disk (the blocks after 60 % gone)', gw, p, pubB, /cannot be opened: block .* is not in the local repo/, ['nixipfs_http_errors_total', 'code="ERR_BLOCK_UNAVAILABLE"'], /error/)
    // Monitoring sees it too.
    const health = await fetch(`${gw.url}/healthz`)
    expect(health.status).toBe(503)
    expect(await health.text()).toMatch(/failing: block .* is not in the local repo/)
  })

  /** A client that holds B's index and fetches NAR blocks from a peer behaving as `behave` says for /ipfs/ requests. */
  async function throughPeer (fault: string, behave: (path: string, honest: () => Promise<Buffer>) => Promise<PeerBehaviour>, log: RegExp, metric: [string, string]): Promise<void> {
    const peer = await hostilePeer(gB.url, async (path, honest) => path.startsWith('/ipfs/') ? await behave(path, honest) : 'honest')
    closers.push(peer.close)
    const repo = tmp()
    cpSync(indexed, repo, { recursive: true })
    const gw = await start(['--repo', repo, '--follow', pubB, '--http-gateway', peer.url, '--peer-timeout', '1'])
    const started = Date.now()
    await refused(fault, gw, p, pubB, log, metric, /error/, store => {
      // Whatever Nix wrote before the cut is a prefix of the true file: no wrong byte got through.
      const got = join(store, p, 'data')
      if (existsSync(got)) expect(Buffer.compare(readFileSync(got), readFileSync(join(p, 'data')).subarray(0, statSync(got).size))).toBe(0)
    })
    // Bounded: a stalling peer costs a few --peer-timeout periods, never a hang.
    expect(Date.now() - started).toBeLessThan(30_000)
  }

  it('a truncated block from a peer', async () => {
    await throughPeer('a truncated block (and CAR) from a peer', async (_path, honest) => {
      const body = await honest()
      return { body: body.subarray(0, body.length >> 1) }
    }, /sent a corrupt block/, ['nixipfs_verification_failures_total', ''])
  })

  it('a wrong block from a peer', async () => {
    const other = (await loadRecord(builder, ipnsNameOf(keyB.publicKey)))!.root.toString()
    await throughPeer('a wrong block (another valid block) from a peer', async (path) => {
      const wrong = path.includes('format=car') ? `/ipfs/${other}?format=car&dag-scope=block` : `/ipfs/${other}?format=raw`
      return { body: Buffer.from(await (await fetch(gB.url + wrong, { headers: { accept: path.includes('format=car') ? 'application/vnd.ipld.car' : 'application/vnd.ipld.raw' } })).arrayBuffer()) }
    }, /sent a corrupt block/, ['nixipfs_verification_failures_total', ''])
  })

  it('an endless response from a peer', async () => {
    await throughPeer('an endless response from a peer', async () => 'endless', /no peer could supply it \(.*sent more than/, ['nixipfs_blocks_unavailable_total', ''])
  })

  it('a slow (trickling) response from a peer', async () => {
    await throughPeer('a trickling response (1 byte / 200 ms) from a peer', async () => 'trickle', /no peer could supply it \(.*did not answer in full/, ['nixipfs_blocks_unavailable_total', ''])
  })

  it('a peer that never answers', async () => {
    await throughPeer('a peer that never answers', async () => 'hang', /no peer could supply it \(.*(Timeout|did not answer)/i, ['nixipfs_blocks_unavailable_total', ''])
  })

  describe('a hostile builder (its key trusted by Nix) publishes', () => {
    let keyH: SecretKey
    let pubH: string
    let gw: GatewayProcess
    let gH: GatewayProcess
    const paths: Record<string, string> = {}
    const escape = join(tmp(), 'escaped')

    beforeAll(async () => {
      const repo = tmp()
      keyH = generateSecretKey('hostile-1')
      pubH = formatPublicKey(publicKeyOf(keyH))
      await writeKeyFiles(keyH, repoKeyPaths(repo).secret, repoKeyPaths(repo).public)
      const small = narOf('nix-archive-1', '(', 'type', 'regular', 'contents', `hello ${salt}\n`, ')')
      const forged = `${parsePublicKey(pubB).name}:${randomBytes(64).toString('base64')}`
      const items = {
        forged: { nar: small, sigs: [forged] },
        narhash: { nar: narOf('nix-archive-1', '(', 'type', 'regular', 'contents', `other ${salt}\n`, ')'), alter: (i: NarInfo) => ({ ...i, narHash: 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s' }) },
        huge: { nar: small, pad: 2 * 1024 * 1024 },
        dotdot: { nar: narOf(...dirTokens(['..'])) },
        slash: { nar: narOf(...dirTokens(['etc/passwd'])) },
        nul: { nar: narOf(...dirTokens(['a\0b'])) },
        // A symlink out of the tree, then a directory of the same name whose file a naive restorer would write through the link.
        symlink: {
          nar: narOf('nix-archive-1', '(', 'type', 'directory',
            'entry', '(', 'name', 'a', 'node', '(', 'type', 'symlink', 'target', escape, ')', ')',
            'entry', '(', 'name', 'a', 'node', '(', 'type', 'directory',
            'entry', '(', 'name', 'pwned', 'node', '(', 'type', 'regular', 'contents', 'x', ')', ')', ')', ')', ')')
        }
      }
      for (const name of Object.keys(items)) paths[name] = fakePath(`evil-${name}`)
      await signedCache(repo, keyH, Object.entries(items).map(([name, item]) => ({ path: paths[name]!, ...item })))
      gH = await start(['--repo', repo])
      gw = await start(['--repo', tmp(), '--follow', pubH, '--http-gateway', gH.url])
      await logLine(gw, 0, /indexed root/)
    })

    it('a forged narinfo signature (no trust policy: Nix refuses it)', async () => {
      await refused('a forged narinfo signature, gateway without --trust', gw, paths.forged!, pubB, undefined, undefined, /lacks a valid signature/)
    })

    it('a forged narinfo signature (--trust: the gateway refuses it)', async () => {
      const strict = await start(['--repo', tmp(), '--follow', pubH, '--http-gateway', gH.url, '--trust', pubB, '--threshold', '1'])
      await logLine(strict, 0, /indexed root/)
      await refused('a forged narinfo signature, gateway with --trust', strict, paths.forged!, pubB, /refused .*evil-forged: no trusted key signed it \(the signature by .* does not verify/, ['nixipfs_quorum_refusals_total', ''], /no substituter that can build it/)
    })

    it('a narinfo whose NarHash does not match its NAR', async () => {
      await refused('a NAR that does not match its signed NarHash', gw, paths.narhash!, pubH, /its narinfo says .*truncated or tampered/, ['nixipfs_http_errors_total', 'code="ERR_INTEGRITY"'], /error/)
    })

    it('a NAR that does not match its signed NarHash, asked for by range', async () => {
      // Nix 2.8 resumes a cut download with a Range request: a range must never be the first, unchecked read of a NAR.
      const info = await (await fetch(`${gw.url}/${parseStorePath(paths.narhash!).hash}.narinfo`)).text()
      const url = /^URL: (.*)$/m.exec(info)![1]!
      const mark = gw.output().length
      const before = await counter(gw.url, 'nixipfs_http_errors_total', 'code="ERR_INTEGRITY"')
      const got: string[] = []
      for (const range of ['bytes=0-', 'bytes=8-40']) {
        const r = await fetch(`${gw.url}/${url}`, { headers: { range } })
        const body = await r.text().catch(() => '')
        expect(body, range).not.toContain(`other ${salt}`)
        expect(r.status, range).toBe(502)
        got.push(`${range}: ${r.status}`)
      }
      const line = await logLine(gw, mark, /its narinfo says .*truncated or tampered/)
      const after = await counter(gw.url, 'nixipfs_http_errors_total', 'code="ERR_INTEGRITY"')
      expect(after - before).toBe(2)
      matrix.push({ fault: 'a NAR that does not match its signed NarHash, asked for by range (as Nix resumes a download)', nix: `${got.join(', ')}; no byte of the NAR`, log: line, counter: `nixipfs_http_errors_total{code="ERR_INTEGRITY"} +${after - before}` })
    })

    it('a 2 MiB narinfo', async () => {
      await refused('a 2 MiB narinfo (a real one is a few hundred bytes)', gw, paths.huge!, pubH, /text file .* is larger than 1048576 bytes/, ['nixipfs_http_errors_total', 'code="ERR_INTEGRITY"'], /error/)
    })

    it.each([
      ['dotdot', 'a NAR entry named ".."', /entry name "\.\." is not allowed/],
      ['slash', 'a NAR entry name with "/" (etc/passwd)', /entry name contains "\/"/],
      ['nul', 'a NAR entry name with NUL', /entry name contains NUL/],
      ['symlink', 'a symlink out of the tree, then a file written through it', /entry "a" is a duplicate/]
    ])('%s', async (name, fault, log) => {
      await refused(fault, gw, paths[name]!, pubH, log, ['nixipfs_http_errors_total', 'code="ERR_NAR_FORMAT"'], /error/)
      expect(existsSync(escape)).toBe(false)
    })
  })

  describe('records from a hostile peer', () => {
    let gw: GatewayProcess
    let offer: PeerBehaviour = 'honest'
    let old: Buffer

    beforeAll(async () => {
      old = Buffer.from((await loadRecordBytes(builder, ipnsNameOf(keyB.publicKey)))!)
      // B publishes again: the record above is now an old one.
      expect((await runCliAsync(['publish', '--repo', builder, q])).status).toBe(0)
      const peer = await hostilePeer(gB.url, async path => path.startsWith('/ipns/') ? offer : 'honest')
      closers.push(peer.close)
      gw = await start(['--repo', tmp(), '--follow', pubB, '--http-gateway', peer.url, '--follow-interval', '1'])
      await logLine(gw, 0, /indexed root/)
      await substitutes(gw.url, q, pubB)
    })

    it.each([
      ['a record with a lower sequence (rollback)', 'ERR_RECORD_ROLLBACK', async () => ({ body: old })],
      ['an expired record', 'ERR_RECORD_EXPIRED', async () => {
        const current = (await loadRecord(builder, ipnsNameOf(keyB.publicKey)))!
        const r = await signRecord(keyB.seed, current.root, current.sequence + 1n, 1)
        await new Promise(resolve => setTimeout(resolve, 10))
        return { body: Buffer.from(r.bytes) }
      }],
      ['a record signed by another key', 'ERR_RECORD_SIGNATURE', async () => ({ body: Buffer.from((await signRecord(generateSecretKey('other').seed, (await loadRecord(builder, ipnsNameOf(keyB.publicKey)))!.root, 99n, 3600_000)).bytes) })]
    ] as const)('%s', async (fault, code, make) => {
      const mark = gw.output().length
      const before = await counter(gw.url, 'nixipfs_records_refused_total', `code="${code}"`)
      offer = await make()
      const line = await logLine(gw, mark, /refused a record from/)
      offer = 'honest'
      const after = await counter(gw.url, 'nixipfs_records_refused_total', `code="${code}"`)
      expect(after).toBeGreaterThan(before)
      // Nix still gets the last good cache.
      await substitutes(gw.url, q, pubB)
      matrix.push({ fault, nix: 'the last good cache (nix copy succeeds, bytes identical)', log: line, counter: `nixipfs_records_refused_total{code="${code}"} +${after - before}` })
    })
  })

  describe('an upstream cache that stalls', () => {
    let gw: GatewayProcess
    let upPub: string
    beforeAll(async () => {
      const dir = tmp()
      const cache = join(dir, 'cache')
      execFileSync('nix-store', ['--generate-binary-cache-key', 'upstream-t', join(dir, 'k.secret'), join(dir, 'k.public')])
      upPub = readFileSync(join(dir, 'k.public'), 'utf8').trim()
      nix(['copy', '--to', `file://${cache}?compression=none&secret-key=${join(dir, 'k.secret')}`, p, q])
      const narOfQ = /^URL: (.*)$/m.exec(readFileSync(join(cache, `${q.slice(11, 43)}.narinfo`), 'utf8'))![1]!
      const up = await serveFiles(cache, new Map([[`/${p.slice(11, 43)}.narinfo`, 'hang'], [`/${narOfQ}`, 'hang']]))
      closers.push(() => { up.server.closeAllConnections(); up.server.close() })
      gw = await start(['--repo', tmp(), '--upstream', up.url, '--upstream-key', upPub, '--peer-timeout', '1'])
    })

    it('an upstream that never sends a narinfo', async () => {
      await refused('an upstream that never sends the narinfo', gw, p, upPub, /upstream.*(timeout|Timeout)/, ['nixipfs_upstream_total', 'event="errors"'], /HTTP error 503/) // an outage is no miss: Nix does not remember a 503
    })

    it('an upstream that never sends a NAR', async () => {
      await refused('an upstream that never sends the NAR', gw, q, upPub, /upstream.*(timeout|Timeout)/, ['nixipfs_upstream_total', 'event="errors"'], /error/)
    })
  })
})
