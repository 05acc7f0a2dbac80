import { execFileSync } from 'node:child_process'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { flipPackedByte } from '../helpers/packs.js'
import { cpSync, readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import { decompress as zstdDecompress } from 'fzstd'
import { CODINGS, type Coding } from '../../src/codings.js'
import { nix, nixAvailable, nixBuild, nixDump, shellDerivation } from '../helpers/nix.js'
import { runCli, startGatewayProcess, tmp, type GatewayProcess } from '../helpers/cli.js'

// Nix on another host gets NARs compressed on the fly (--compress-nar auto):
// narinfos say Compression: zstd (WebAssembly before Node 22.15), have no
// FileHash/FileSize, and keep their signatures (which cover only the
// fingerprint). Nix here (2.8) reads zstd, br, xz and gzip.
const salt = `${Date.now()}-${process.pid}`
const EXPR = `
let
  lib = ${shellDerivation(`cnar-lib-${salt}`, 'mkdir -p $out/lib; i=0; while [ $i -lt 30000 ]; do echo "compressible line $i ' + salt + '"; i=$((i+1)); done > $out/lib/data.txt; cp /bin/sh $out/lib/sh')};
in ${shellDerivation(`cnar-top-${salt}`, 'mkdir -p $out/bin; echo ${lib} > $out/refs; head -c 3000000 /dev/urandom > $out/noise; ln -s ${lib}/lib/sh $out/bin/sh')}
`

/** `bytes` decompressed whole. */
function decompressed (coding: Coding, bytes: Buffer): Buffer {
  if (coding === 'br') return brotliDecompressSync(bytes)
  if (coding === 'gzip') return gunzipSync(bytes)
  return Buffer.from(zstdDecompress(bytes)) // fzstd: a decoder other than the one nixipfs uses
}

/** An IPv4 address of this machine other than loopback, if it has one. */
const outside = Object.values(networkInterfaces()).flat().find(a => a !== undefined && a.family === 'IPv4' && !a.internal)?.address

describe.runIf(nixAvailable)('NARs compressed on the fly for Nix on other hosts', () => {
  let repo: string
  let top: string
  let closure: string[]
  let pub: string
  const gateways: GatewayProcess[] = []

  beforeAll(() => {
    repo = tmp()
    ;[top] = nixBuild(EXPR) as [string]
    closure = execFileSync('nix-store', ['--query', '--requisites', top], { encoding: 'utf8' }).trim().split('\n')
    expect(runCli(['publish', '-r', '--repo', repo, top]).status).toBe(0)
    pub = readFileSync(join(repo, 'keys', 'cache.public'), 'utf8').trim()
  })
  afterAll(async () => { await Promise.all(gateways.map(async g => await g.stop())) })

  /** `nix copy --from url` of the closure into a fresh store; every path byte-identical to the original. The NAR bytes the gateway sent. */
  async function copiedIntact (url: string): Promise<number> {
    const store = tmp()
    const r = nix(['copy', '--from', url, '--to', store, top, '--option', 'trusted-public-keys', pub], { allowFail: true })
    expect(r.status, r.stderr).toBe(0)
    for (const p of closure) expect(Buffer.compare(nixDump(p), nixDump(join(store, p))), p).toBe(0)
    const metrics = await (await fetch(`${url}/metrics`)).text()
    return Number(/^nixipfs_http_response_bytes_total\{route="nar"\} (\S+)$/m.exec(metrics)?.[1])
  }
  const narBytes = (): number => closure.reduce((sum, p) => sum + nixDump(p).length, 0)

  it.runIf(outside !== undefined)(`serves compressed NARs (auto) to a client on another address (${outside ?? 'none here'})`, async () => {
    const g = await startGatewayProcess(['--repo', repo, '--listen', `${outside!}:0`])
    gateways.push(g)
    expect(g.url).toContain(outside)
    const hash = top.slice(11, 43)
    const narinfo = await (await fetch(`${g.url}/${hash}.narinfo`)).text()
    expect(narinfo).toMatch(new RegExp(`^Compression: ${CODINGS[0]!}$`, 'm'))
    expect(narinfo).toMatch(/^URL: nar\/\w+\.nar\.(zst|br)$/m)
    expect(narinfo).not.toMatch(/^File(Hash|Size):/m)
    expect(narinfo).toMatch(/^Sig: /m)
    const nar = await fetch(`${g.url}/${/^URL: (.*)$/m.exec(narinfo)![1]!}`)
    expect(nar.headers.get('content-length')).toBeNull()
    const body = Buffer.from(await nar.arrayBuffer())
    expect(Buffer.compare(decompressed(CODINGS[0]!, body), nixDump(top))).toBe(0)
    // What Nix fetched went compressed: fewer bytes than the NARs (the random file aside, they compress well).
    expect(await copiedIntact(g.url) - body.length).toBeLessThan(narBytes())
  })

  for (const coding of CODINGS) {
    it(`serves ${coding} NARs to every client with --compress-nar ${coding}, which Nix substitutes byte-identical`, async () => {
      const g = await startGatewayProcess(['--repo', repo, '--compress-nar', coding])
      gateways.push(g)
      const narinfo = await (await fetch(`${g.url}/${top.slice(11, 43)}.narinfo`)).text()
      expect(narinfo).toMatch(new RegExp(`^Compression: ${coding}$`, 'm'))
      expect(await copiedIntact(g.url)).toBeLessThan(narBytes())
      await g.stop()
    })
  }

  it('cuts the compressed stream when a stored block is corrupt: Nix refuses the path, none becomes valid', async () => {
    const copy = tmp()
    cpSync(repo, copy, { recursive: true })
    const lib = closure.find(p => p.includes('cnar-lib'))!
    // Far into the NAR: the headers (and compressed bytes of earlier blocks) are out when the block is read.
    flipPackedByte(copy, nixDump(lib).subarray(900_000, 900_064))
    const g = await startGatewayProcess(['--repo', copy, '--compress-nar', CODINGS[0]!])
    gateways.push(g)
    const store = tmp()
    const r = nix(['copy', '--from', g.url, '--to', store, lib, '--option', 'trusted-public-keys', pub], { allowFail: true })
    expect(r.status).not.toBe(0)
    expect(nix(['path-info', '--store', store, lib], { allowFail: true }).status).not.toBe(0)
    await g.stop()
  })

  it('keeps raw NARs for loopback clients by default', async () => {
    const g = await startGatewayProcess(['--repo', repo])
    gateways.push(g)
    const narinfo = await (await fetch(`${g.url}/${top.slice(11, 43)}.narinfo`)).text()
    expect(narinfo).toMatch(/^Compression: none$/m)
    expect(narinfo).toMatch(/^URL: nar\/\w+\.nar$/m)
    expect(narinfo).toMatch(/^FileHash: /m)
    expect(await copiedIntact(g.url)).toBe(narBytes())
  })
})
