import { execFileSync } from 'node:child_process'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nix, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'

// A closure of three paths: a library with unicode names, empty files and
// directories; a tool with an executable, symlinks into the library and a
// multi-megabyte file (several blocks, a two-level DAG at most); and a top
// path that references both.
const salt = `${Date.now()}-${process.pid}` // fresh store paths each run, so nothing is already there
const EXPR = `
let
  lib = ${shellDerivation(`e2e-lib-${salt}`, 'mkdir -p $out/lib/empty-dir $out/share/ünïcödé; echo library > $out/lib/liba.txt; touch $out/lib/empty; printf "日本語" > $out/share/ünïcödé/名前.txt; printf x > "$out/share/😀"')};
  tool = ${shellDerivation(`e2e-tool-${salt}`, 'mkdir -p $out/bin; printf "#!/bin/sh\\necho tool\\n" > $out/bin/tool; chmod +x $out/bin/tool; ln -s ${lib}/lib/liba.txt $out/liba; ln -s bin/tool $out/relative-link; ln -s /nonexistent $out/dangling; i=0; while [ $i -lt 40000 ]; do echo "line $i of a file big enough to span many blocks ' + salt + '"; i=$((i+1)); done > $out/big.txt')};
in ${shellDerivation(`e2e-top-${salt}`, 'mkdir -p $out; echo ${lib} ${tool} > $out/refs')}
`

describe.runIf(nixAvailable)('publish → gateway → nix copy --from', () => {
  let repo: string
  let top: string
  let closure: string[]
  let pub: string
  let gw: GatewayProcess

  beforeAll(async () => {
    repo = tmp()
    ;[top] = nixBuild(EXPR) as [string]
    closure = execFileSync('nix-store', ['--query', '--requisites', top], { encoding: 'utf8' }).trim().split('\n')
    expect(closure).toHaveLength(3)
    const r = runCli(['publish', '-r', '--repo', repo, top])
    expect(r.stderr + r.stdout).toContain('published 3 path(s)')
    pub = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
    gw = await startGatewayProcess(['--repo', repo])
  })
  afterAll(async () => { await gw?.stop() })

  it('prints each path with its CID and skips what is already published', () => {
    const again = runCli(['publish', '-r', '--repo', repo, top])
    expect(again.status).toBe(0)
    expect(again.stderr + again.stdout).toContain('published 0 path(s), 3 already there')
    const info = runCli(['info', '--repo', repo])
    expect(info.stdout).toMatch(/sequence: 1\n/)
    expect(info.stdout).toMatch(/entries:  3\n/)
  })

  it('is substituted by real Nix, and nix store verify accepts the copy', () => {
    const store = tmp()
    nix(['copy', '--from', gw.url, '--to', store, top, '--option', 'trusted-public-keys', pub])
    for (const p of closure) {
      // Byte-identical: the NARs Nix restored hash the same as the originals.
      const orig = nixDump(p)
      const copy = nixDump(join(store, p))
      expect(Buffer.compare(orig, copy)).toBe(0)
    }
    const verify = nix(['store', 'verify', '--store', store, '-r', top, '--option', 'trusted-public-keys', pub])
    expect(verify.status).toBe(0)
    expect(statSync(join(store, closure.find(p => p.includes('e2e-tool'))!, 'bin/tool')).mode & 0o111).not.toBe(0)
  })

  it('counts that traffic in /metrics, and answers /healthz', async () => {
    const text = await (await fetch(`${gw.url}/metrics`)).text()
    const value = (name: string, labels: string): number => Number(new RegExp(`^${name}\\{${labels}\\} (\\d+(?:\\.\\d+)?(?:e\\+\\d+)?)$`, 'm').exec(text)?.[1] ?? NaN)
    expect(text).toMatch(/^# TYPE nixipfs_http_requests_total counter$/m)
    expect(value('nixipfs_http_requests_total', 'route="narinfo",status="200"')).toBeGreaterThanOrEqual(3)
    expect(value('nixipfs_http_requests_total', 'route="nar",status="200"')).toBeGreaterThanOrEqual(3)
    const narBytes = JSON.parse(nix(['path-info', '--json', '-r', top, '--option', 'substituters', '']).stdout).reduce((a: number, p: { narSize: number }) => a + p.narSize, 0)
    expect(value('nixipfs_http_response_bytes_total', 'route="nar"')).toBeGreaterThanOrEqual(narBytes)
    expect(value('nixipfs_blocks_served_total', 'source="local"')).toBeGreaterThan(0)
    expect(text).toMatch(/^nixipfs_verification_failures_total 0$/m)
    expect(text).toMatch(/^nixipfs_record_sequence\{name="k51\w+"\} 1$/m)
    const health = await fetch(`${gw.url}/healthz`)
    expect(health.status).toBe(200)
    expect(await health.text()).toBe('ok: serving\n')
  })

  it('is refused by Nix when the trusted key did not sign', () => {
    const store = tmp()
    const other = tmp()
    execFileSync('nix-store', ['--generate-binary-cache-key', 'stranger-1', join(other, 's'), join(other, 'p')])
    const r = nix(['copy', '--from', gw.url, '--to', store, top, '--option', 'trusted-public-keys', readFileSync(join(other, 'p'), 'utf8')], { allowFail: true })
    expect(r.status).not.toBe(0)
    expect(r.stderr).toMatch(/lacks a valid signature|no signature|not signed/i)
  })

  it('answers the binary-cache protocol: cache info, HEAD, 404, content types', async () => {
    const info = await fetch(`${gw.url}/nix-cache-info`)
    expect(info.headers.get('content-type')).toBe('text/x-nix-cache-info')
    expect(await info.text()).toMatch(/^StoreDir: \/nix\/store\nWantMassQuery: 1\n/)
    const hash = top.slice('/nix/store/'.length, '/nix/store/'.length + 32)
    const head = await fetch(`${gw.url}/${hash}.narinfo`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-type')).toBe('text/x-nix-narinfo')
    const missing = await fetch(`${gw.url}/${'0'.repeat(32)}.narinfo`)
    expect(missing.status).toBe(404)
    const malformed = await fetch(`${gw.url}/not-a-hash.narinfo`)
    expect(malformed.status).toBe(404)
    const text = await (await fetch(`${gw.url}/${hash}.narinfo`)).text()
    expect(text).toContain(`StorePath: ${top}\n`)
    expect(text).toMatch(/^URL: nar\/bafk[a-z0-9]+\.nar$/m)
    expect(text).toContain('Compression: none\n')
  })

  it('serves a path published while it runs (the post-build-hook case)', async () => {
    const [late] = nixBuild(shellDerivation(`e2e-late-${salt}`, 'mkdir -p $out; echo late > $out/late')) as [string]
    expect(runCli(['publish', '--repo', repo, late]).status).toBe(0)
    // The record moved in another process: the gateway sees it within its recheck period, and the new blocks with it.
    let status = 0
    for (let i = 0; i < 30 && status !== 200; i++) {
      status = (await fetch(`${gw.url}/${late.slice(11, 43)}.narinfo`)).status
      if (status !== 200) await new Promise(resolve => setTimeout(resolve, 100))
    }
    expect(status).toBe(200)
    const store = tmp()
    nix(['copy', '--from', gw.url, '--to', store, late, '--option', 'trusted-public-keys', pub])
    expect(Buffer.compare(nixDump(late), nixDump(join(store, late)))).toBe(0)
  })

  it('serves byte ranges of a NAR', async () => {
    const toolPath = closure.find(p => p.includes('e2e-tool'))!
    const hash = toolPath.slice(11, 43)
    const narinfo = await (await fetch(`${gw.url}/${hash}.narinfo`)).text()
    const url = /^URL: (.*)$/m.exec(narinfo)![1]!
    const nar = nixDump(toolPath)
    const r = await fetch(`${gw.url}/${url}`, { headers: { range: 'bytes=300000-300099' } })
    expect(r.status).toBe(206)
    expect(r.headers.get('content-range')).toBe(`bytes 300000-300099/${nar.length}`)
    expect(Buffer.compare(Buffer.from(await r.arrayBuffer()), nar.subarray(300000, 300100))).toBe(0)
  })

  it('ignores an invalid range (bytes=5-2: RFC 9110 §14.2) and serves the whole NAR; a range past the end is 416', async () => {
    const toolPath = closure.find(p => p.includes('e2e-tool'))!
    const narinfo = await (await fetch(`${gw.url}/${toolPath.slice(11, 43)}.narinfo`)).text()
    const url = /^URL: (.*)$/m.exec(narinfo)![1]!
    const nar = nixDump(toolPath)
    /** One raw HTTP/1.1 request with `range`: the status line, Content-Length and body bytes received. */
    const raw = async (range: string): Promise<{ status: string, length: number, body: Buffer }> => await new Promise((resolve, reject) => {
      const socket = connect(Number(new URL(gw.url).port), '127.0.0.1', () => socket.write(`GET /${url} HTTP/1.1\r\nHost: x\r\nRange: ${range}\r\nConnection: close\r\n\r\n`))
      const parts: Buffer[] = []
      socket.on('data', (b: Buffer) => parts.push(b))
      socket.on('error', reject)
      socket.on('close', () => {
        const all = Buffer.concat(parts)
        const end = all.indexOf('\r\n\r\n')
        const head = all.subarray(0, end).toString()
        resolve({ status: head.split('\r\n')[0]!, length: Number(/content-length: (\d+)/i.exec(head)?.[1]), body: all.subarray(end + 4) })
      })
    })
    const invalid = await raw('bytes=5-2')
    expect(invalid.status).toBe('HTTP/1.1 200 OK')
    expect(invalid.length).toBe(nar.length)
    expect(Buffer.compare(invalid.body, nar)).toBe(0)
    const unsatisfiable = await raw(`bytes=${nar.length}-`)
    expect(unsatisfiable.status).toMatch(/^HTTP\/1.1 416 /)
  })

  it('fails the request on a corrupted block rather than streaming wrong bytes', async () => {
    const toolPath = closure.find(p => p.includes('e2e-tool'))!
    const narinfo = await (await fetch(`${gw.url}/${toolPath.slice(11, 43)}.narinfo`)).text()
    const url = /^URL: (.*)$/m.exec(narinfo)![1]!
    const nar = nixDump(toolPath)
    // Flip one byte of this NAR's data where it sits in the repo's pack file, 300 kB in.
    const file = join(repo, 'packs', '000001.pack')
    const bytes = readFileSync(file)
    const at = bytes.indexOf(nar.subarray(300_000, 300_064))
    expect(at).toBeGreaterThan(0)
    bytes[at]! ^= 0xff
    writeFileSync(file, bytes)
    try {
      let body: Buffer | undefined
      let status = 0
      try {
        const r = await fetch(`${gw.url}/${url}`)
        status = r.status
        body = Buffer.from(await r.arrayBuffer())
      } catch { /* the connection was cut: what we want */ }
      expect(status === 200 && body !== undefined && body.length === nar.length).toBe(false)
      if (body !== undefined && status === 200) expect(Buffer.compare(body, nar.subarray(0, body.length))).toBe(0)
      const store = tmp()
      const r = nix(['copy', '--from', gw.url, '--to', store, toolPath, '--option', 'trusted-public-keys', pub], { allowFail: true })
      expect(r.status).not.toBe(0)
      expect(await gw.waitForLog(/is corrupt/)).toMatch(/is corrupt/)
    } finally {
      bytes[at]! ^= 0xff
      writeFileSync(file, bytes)
    }
  })
})
