import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { unmarshalIPNSRecord } from 'ipns'
import { importer } from 'ipfs-unixfs-importer'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { base36 } from 'multiformats/bases/base36'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as identity from 'multiformats/hashes/identity'
import { describe, expect, it } from 'vitest'
import { CID_RECIPE_CDC, CID_RECIPE_FIXED, DAG_WIDTH, DEFAULT_EXPIRED_GRACE_MS, DEFAULT_PRIORITY, DEFAULT_RECORD_LIFETIME_MS, FIXED_CHUNK_BYTES, HOUR_MS } from '../../src/constants.js'
import { narCidOfUrl } from '../../src/cache/index.js'
import { loadRecord } from '../../src/cache/records.js'
import { RECIPES } from '../../src/cache/recipes.js'
import { getVerified } from '../../src/ipfs/block.js'
import { CDC_V1, cdcChunker, gearTable } from '../../src/ipfs/cdc.js'
import type { Chunker } from '../../src/ipfs/chunker.js'
import { SHARD_SPLIT_THRESHOLD_BYTES } from '../../src/ipfs/dir-update.js'
import { importFile } from '../../src/ipfs/file-dag.js'
import { DirNodeCache, hamtHash, lookupEntry } from '../../src/ipfs/hamt.js'
import { ipnsNameOf, signRecord } from '../../src/ipfs/ipns.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { NarHasher } from '../../src/nix/hash.js'
import { fingerprint, formatNarInfo, MAX_NARINFO_BYTES, parseNarInfo } from '../../src/nix/narinfo.js'
import { parsePublicKey, parseSecretKey, signFingerprint } from '../../src/nix/signing.js'
import { openStatement, signStatement, type DisputeStatement } from '../../src/trust/statement.js'
import { signedCache } from '../helpers/cache.js'
import { tmp } from '../helpers/cli.js'

// docs/protocol.md promises that its worked examples are what the code does:
// each example is read out of the document here and recomputed from the code.

const ROOT = resolve(__dirname, '../..')
const DOC = readFileSync(join(ROOT, 'docs/protocol.md'), 'utf8')
const fixture = (path: string): Buffer => readFileSync(join(ROOT, 'fixtures', path))
const secretKey = parseSecretKey(fixture('keys/fixture-1.sec').toString('utf8'))

/** The text of the fenced block that follows `<!-- example: NAME -->`, with its final newline. */
function example (name: string): string {
  const m = new RegExp(`<!-- example: ${name} -->\\n\`\`\`[a-z]*\\n([\\s\\S]*?\\n)\`\`\`\\n`).exec(DOC)
  if (m === null) throw new Error(`docs/protocol.md has no example "${name}"`)
  return m[1]!
}

/** `label: value` lines (the value starts after the colon and spaces). */
function fields (text: string, separator = ':'): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of text.split('\n').filter(l => l.trim() !== '')) {
    const at = line.indexOf(separator)
    out.set(line.slice(0, at).trim(), line.slice(at + 1).trim())
  }
  return out
}

function field (map: Map<string, string>, label: string): string {
  const value = map.get(label)
  if (value === undefined) throw new Error(`the example has no "${label}" line`)
  return value
}

async function * once (bytes: Uint8Array): AsyncGenerator<Uint8Array> { yield bytes }

async function chunkLengths (chunker: Chunker, bytes: Uint8Array): Promise<number[]> {
  const out: number[] = []
  for await (const c of chunker(once(bytes))) out.push(c.length)
  return out
}

describe('docs/protocol.md worked examples', () => {
  it('derives the IPNS name from the Nix public key as section 1 says', () => {
    const f = fields(example('ipns-name'))
    const key = parsePublicKey(field(f, 'public key'))
    expect(field(f, 'public key')).toBe(fixture('keys/fixture-1.pub').toString('utf8').trim())
    expect(Buffer.from(key.key).toString('hex')).toBe(field(f, 'key bytes'))
    // By hand: protobuf (Type Ed25519, Data key) → identity multihash → CIDv1 libp2p-key → base36.
    const protobuf = Buffer.concat([Buffer.from('08011220', 'hex'), key.key])
    const cid = CID.createV1(0x72, identity.identity.digest(protobuf))
    expect(Buffer.from(cid.bytes).toString('hex')).toBe(field(f, 'CID bytes').replace(/ /g, ''))
    expect(cid.toString(base36)).toBe(field(f, 'IPNS name'))
    expect(ipnsNameOf(key.key)).toBe(field(f, 'IPNS name'))
    expect(field(f, 'IPNS name').startsWith('k51qzi5uqu5d')).toBe(true)
  })

  it('places a name in the HAMT slots section 2.1 gives', async () => {
    const f = fields(example('hamt'))
    const hash = await hamtHash(field(f, 'name'))
    expect(Buffer.from(hash).toString('hex')).toBe(field(f, 'hash'))
    expect([...hash.subarray(0, 2)].map(b => b.toString(16).toUpperCase().padStart(2, '0')).join(' ')).toBe(field(f, 'slots'))
  })

  it('writes the nix-cache-info of section 2.2 into a new cache', async () => {
    const repo = tmp()
    const nar = fixture('binary-cache/nar/1nidbnkxgsmr1raahqxrz50k8yc08h64kk5amz6vaa09zkm823wl.nar')
    await signedCache(repo, secretKey, [{ path: '/nix/store/7zir8n82a5piyqv7a4h7czjpxd4ih19c-nixipfs-fixture-top', nar }])
    const blocks = await PackStore.openRepo(repo)
    try {
      const record = await loadRecord(repo, ipnsNameOf(secretKey.publicKey))
      const cid = await lookupEntry(blocks, record!.root, 'nix-cache-info', new DirNodeCache())
      expect(cid?.code).toBe(raw.code) // a small file is one raw block
      expect(Buffer.from(await getVerified(blocks, cid!)).toString('utf8')).toBe(example('nix-cache-info'))
      expect(record!.sequence).toBe(1n) // the first record of a key (section 4.1)
    } finally {
      await blocks.close()
    }
  })

  it('gives the narinfo, fingerprint and signature of section 2.3', async () => {
    const text = example('narinfo')
    const info = parseNarInfo(text)
    expect(formatNarInfo(info)).toBe(text)
    expect(fingerprint(info) + '\n').toBe(example('fingerprint'))
    expect(info.sigs).toEqual([signFingerprint(secretKey, fingerprint(info))])
    // The URL is not signed: Nix's own narinfo of the path (a file:// cache) carries the same signature.
    const nixs = parseNarInfo(fixture('binary-cache/7zir8n82a5piyqv7a4h7czjpxd4ih19c.narinfo').toString('utf8'))
    expect(nixs.sigs).toContain(info.sigs[0])
    // URL names the NAR's cdc-v1 root CID, and the hashes are the NAR's.
    const nar = fixture('binary-cache/nar/1nidbnkxgsmr1raahqxrz50k8yc08h64kk5amz6vaa09zkm823wl.nar')
    const { cid } = await importFile(new MemoryBlockstore(), once(nar), RECIPES.cdc.chunker)
    expect(narCidOfUrl(info.url)?.toString()).toBe(cid.toString())
    const hasher = new NarHasher()
    hasher.update(nar)
    const narHash = hasher.digest()
    expect([info.narHash, info.narSize, info.fileHash, info.fileSize]).toEqual([narHash, nar.length, narHash, nar.length])
  })

  it('has the gear table of section 3.1', () => {
    const table = gearTable(CDC_V1.seed)
    const lines = fields(example('gear'), '=')
    expect(lines.size).toBeGreaterThan(0)
    for (const [label, value] of lines) {
      const i = Number(/^G\[(\d+)\]$/.exec(label)![1])
      expect((table[i]! >>> 0).toString(16).padStart(8, '0'), label).toBe(value)
    }
    // The prose: 32 zero bytes give fp = −G[0] mod 2^32, which fails both masks.
    const zeroFp = /−G\[0\] mod 2\^32 =\s+`([0-9a-f]{8})`/.exec(DOC)![1]!
    const fp = (-table[0]!) >>> 0
    expect(fp.toString(16).padStart(8, '0')).toBe(zeroFp)
    expect(fp & 0xffff0000).not.toBe(0)
  })

  it('cuts the cdc-v1 test vectors of section 3.1 as listed', async () => {
    const lines = example('cdc-vectors').trim().split('\n')
    const windows = new Map(lines.filter(l => / = /.test(l)).map(l => { const [k, v] = l.split(' = '); return [k!, Buffer.from(v!, 'hex')] }))
    const vectors = lines.filter(l => l.includes('->'))
    expect(vectors.length).toBe(5)
    for (const line of vectors) {
      const [, name, input, output] = /^([\w-]+):\s+(.*?)\s+->\s+(.*)$/.exec(line)!
      const parts = input!.split(/\s+/).map(token => {
        const zeros = /^zeros\((\d+)\)$/.exec(token)
        if (zeros !== null) return Buffer.alloc(Number(zeros[1]))
        const w = windows.get(token)
        if (w?.length !== 32) throw new Error(`${name!}: unknown token ${token}`)
        return w
      })
      expect((await chunkLengths(cdcChunker(CDC_V1), Buffer.concat(parts))).join(' '), name).toBe(output)
    }
  })

  it('gives the NAR root CIDs of section 3.2, and the standard importer agrees', async () => {
    const recipes = new Map([[CID_RECIPE_CDC, RECIPES.cdc], [CID_RECIPE_FIXED, RECIPES.fixed]])
    const lines = example('nar-cids').trim().split('\n')
    expect(lines.length).toBe(4)
    for (const line of lines) {
      const [file, recipeName, sizes, cidText] = line.split(/\s+/)
      const recipe = recipes.get(recipeName!)!
      const nar = readFileSync(join(ROOT, file!))
      expect((await chunkLengths(recipe.chunker, nar)).join(','), line).toBe(sizes)
      const { cid } = await importFile(new MemoryBlockstore(), once(nar), recipe.chunker)
      expect(cid.toString(), line).toBe(cidText)
      // The DAG layer, built independently by ipfs-unixfs-importer (with its own fixed-size chunker for fixed-256k-v1).
      let last: { cid: CID } | undefined
      for await (const entry of importer([{ content: once(nar) }], new MemoryBlockstore(), {
        cidVersion: 1,
        rawLeaves: true,
        reduceSingleLeafToSelf: true,
        layout: balanced({ maxChildrenPerNode: DAG_WIDTH }),
        chunker: recipeName === CID_RECIPE_FIXED ? fixedSize({ chunkSize: FIXED_CHUNK_BYTES }) : cdcChunker(CDC_V1)
      })) last = entry
      expect(last!.cid.toString(), line).toBe(cidText)
    }
  })

  it('signs IPNS records of the form section 4 gives', async () => {
    const f = fields(example('ipns-record'))
    const value = field(f, 'value')
    const record = await signRecord(secretKey.seed, CID.parse(value.slice('/ipfs/'.length)), 1n, DEFAULT_RECORD_LIFETIME_MS)
    const fieldsOf = unmarshalIPNSRecord(record.bytes)
    expect(fieldsOf.value).toBe(value)
    expect(fieldsOf.validityType).toBe(field(f, 'validityType'))
    expect(String(fieldsOf.ttl)).toBe(field(f, 'ttl'))
    expect(field(f, 'signatures')).toBe('V1 and V2')
    expect('signatureV1' in fieldsOf && fieldsOf.signatureV1.length === 64 && fieldsOf.signatureV2.length === 64).toBe(true)
    expect(field(f, 'pubKey')).toBe('absent')
    expect(fieldsOf.pubKey).toBeUndefined()
    expect(record.bytes.length).toBe(Number(/\((\d+) for the example\)/.exec(DOC)![1]))
  })

  it('computes the rendezvous CID of section 5, and its one-line command prints it', () => {
    const f = fields(example('rendezvous'))
    const hash = field(f, 'store path hash')
    expect(field(f, 'preimage')).toBe(`nixipfs-narinfo-v1:${hash}`)
    const digest = createHash('sha256').update(Buffer.from(field(f, 'preimage'), 'utf8')).digest()
    expect(digest.toString('hex')).toBe(field(f, 'sha2-256'))
    const cid = CID.parse(field(f, 'CID'))
    expect([cid.version, cid.code, cid.multihash.code]).toEqual([1, 0x55, 0x12])
    expect(Buffer.from(cid.multihash.digest).equals(digest)).toBe(true)
    const command = /```sh\n(node --input-type=module -e "[^\n]*")\n```/.exec(DOC)![1]!
    const script = /-e "(.*)"$/.exec(command)![1]!
    expect(script).toContain(`nixipfs-narinfo-v1:${hash}`)
    expect(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' }).trim()).toBe(field(f, 'CID'))
  })

  it('signs and verifies the dispute statement of section 6.1 byte for byte', () => {
    const text = example('statement')
    const cache = /it\s+verifies in the cache `(k51[0-9a-z]+)`/.exec(DOC)![1]!
    expect(cache).toBe(ipnsNameOf(secretKey.publicKey))
    const statement = openStatement(text, cache)
    const { type: _type, by: _by, ...rest } = statement
    expect(signStatement(secretKey, rest as Omit<DisputeStatement, 'type' | 'by'>)).toBe(text)
    // Layout is not signed, content is.
    const compact = JSON.stringify(JSON.parse(text))
    expect(openStatement(compact, cache)).toEqual(statement)
    expect(() => openStatement(text.replace('"narSize": 1024', '"narSize": 1025'), cache)).toThrow(/bad signature/)
  })

  it('lists constants that are the code\'s', () => {
    const code: Record<string, string | number> = {
      'cdc-v1 minimum bytes': CDC_V1.minBytes,
      'cdc-v1 normal bytes': CDC_V1.normalBytes,
      'cdc-v1 maximum bytes': CDC_V1.maxBytes,
      'cdc-v1 strict mask bits': CDC_V1.strictBits,
      'cdc-v1 loose mask bits': CDC_V1.looseBits,
      'cdc-v1 gear seed': CDC_V1.seed,
      'fixed-256k-v1 chunk bytes': FIXED_CHUNK_BYTES,
      'DAG links per node': DAG_WIDTH,
      'HAMT shard threshold bytes': SHARD_SPLIT_THRESHOLD_BYTES,
      'largest index file bytes': MAX_NARINFO_BYTES,
      'record lifetime hours': DEFAULT_RECORD_LIFETIME_MS / HOUR_MS,
      'expired record grace hours': DEFAULT_EXPIRED_GRACE_MS / HOUR_MS,
      'nix-cache-info priority': DEFAULT_PRIORITY
    }
    const doc = fields(example('constants'))
    expect(Object.fromEntries(doc)).toEqual(Object.fromEntries(Object.entries(code).map(([k, v]) => [k, String(v)])))
  })
})

describe('links of the documentation', () => {
  /** Markdown files the project ships: README and docs/. */
  const files = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter(f => f.endsWith('.md')).map(f => `docs/${f}`)]

  it('point only at files inside the repository that exist', () => {
    const bad: string[] = []
    for (const file of files) {
      const text = readFileSync(join(ROOT, file), 'utf8')
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!.replace(/#.*$/, '')
        if (/^[a-z]+:/i.test(m[1]!) || target === '') continue // web links and anchors
        const path = resolve(dirname(join(ROOT, file)), target)
        if (relative(ROOT, path).startsWith('..') || !existsSync(path)) bad.push(`${file}: ${m[1]!}`)
      }
    }
    expect(bad).toEqual([])
  })

  it('leave no reference to the design document outside the repository', () => {
    // Built from parts, so this file does not name it itself.
    const outside = new RegExp(['shared', 'design'].join('/') + '|\\.\\./' + 'shared')
    const walk = (dir: string): string[] => readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap(e =>
      e.name === 'node_modules' || e.name === 'work' ? [] : e.isDirectory() ? walk(`${dir}/${e.name}`) : [`${dir}/${e.name}`])
    const files = [...['src', 'test', 'bench', 'nix', 'docs', 'examples'].flatMap(walk), 'README.md', 'flake.nix', 'package.json']
    expect(files.filter(f => outside.test(readFileSync(join(ROOT, f), 'utf8')))).toEqual([])
  })
})
