import type { Readable } from 'node:stream'
import type { CID } from 'multiformats/cid'
import { collectAtMost } from '../bytes.js'
import { CODINGS, type Coding } from '../codings.js'
import { PeerError } from '../errors.js'
import { decodedBody, decodedBytes, responseCoding } from './decode.js'
import { discard, HttpPool, type HttpResponse } from './http-get.js'
import { NARINFO_KEY_PREFIX } from './protocols.js'
import { decodeHoldings, MAX_HOLDINGS_BYTES, type Holding } from './rendezvous.js'

/**
 * Whether responses are asked for compressed: `auto` asks every peer but a
 * loopback one (on loopback, bytes are free and compressing costs CPU on both
 * ends), `always` asks every peer (tests and shaped-network benchmarks on
 * one machine), `never` asks none.
 */
export type PeerCompression = 'auto' | 'always' | 'never'
export const PEER_COMPRESSIONS: readonly PeerCompression[] = ['auto', 'always', 'never']

/** Limits per peer: a peer that stalls is dropped, never waited on for ever; a peer gets a bounded number of connections. */
export interface HttpPeerLimits {
  /** the peer may send nothing (no answer, no next piece of a body) this long */
  idleMs: number
  /** connections (so requests) to one peer at once */
  connections: number
  /** whether responses are asked for compressed. @default 'auto' */
  compression?: PeerCompression
}

const DEFAULT_LIMITS: HttpPeerLimits = { idleMs: 10_000, connections: 16 }

/** Largest block or record a peer may send in answer to a single-block request (decoded, when it came compressed). */
const MAX_BLOCK_BYTES = 4 * 1024 * 1024
const MAX_RECORD_BYTES = 10 * 1024
/**
 * Most bytes a compressed CAR stream may decode to per byte received (past
 * the first 4 MiB): the NARs measured shrink 2–4×, and a CAR sends each
 * distinct block once (a run of zeros becomes one block), so 64× is far beyond
 * any real stream and still stops a bomb at 64 bytes per byte.
 */
const MAX_CAR_RATIO = 64

/** True when `url` names this machine by a loopback address. */
export function isLoopbackUrl (url: string): boolean {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '')
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || /^::ffff:127\./i.test(host)
}

/** Keep-alive connection pools (one per origin inside), shared by the HTTP peers with the same limits. */
const pools = new Map<string, HttpPool>()
function pool (limits: HttpPeerLimits): HttpPool {
  const key = `${limits.idleMs}/${limits.connections}`
  let p = pools.get(key)
  if (p === undefined) {
    p = new HttpPool(limits)
    pools.set(key, p)
  }
  return p
}

/**
 * A peer reached over the IPFS trustless gateway protocol: a nixipfs gateway
 * or any IPFS HTTP gateway. Nothing it returns is trusted: callers verify
 * blocks against CIDs and records against their names.
 */
export class HttpPeer {
  readonly url: string
  /** the codings asked for in Accept-Encoding (none: responses come as they are) */
  readonly codings: readonly Coding[]
  constructor (url: string, private readonly limits: HttpPeerLimits = DEFAULT_LIMITS) {
    this.url = url.replace(/\/+$/, '')
    const compression = limits.compression ?? 'auto'
    this.codings = compression === 'always' || (compression === 'auto' && !isLoopbackUrl(this.url)) ? CODINGS : []
  }

  /** One block (`?format=raw`), unverified; undefined when the peer does not have it. */
  async block (cid: CID, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    return await this.small(`/ipfs/${cid.toString()}?format=raw`, 'application/vnd.ipld.raw', MAX_BLOCK_BYTES, signal)
  }

  /** The signed IPNS record for `name`, unverified; undefined when the peer has none. */
  async record (name: string, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    return await this.small(`/ipns/${name}?format=ipns-record`, 'application/vnd.ipfs.ipns-record', MAX_RECORD_BYTES, signal)
  }

  /** The caches in which the peer holds a narinfo for store path hash `hash`, with its text (unverified). */
  async holdings (hash: string, signal?: AbortSignal): Promise<Holding[]> {
    const answer = await this.small(`${NARINFO_KEY_PREFIX}${hash}`, 'text/plain', MAX_HOLDINGS_BYTES, signal)
    return answer === undefined ? [] : decodeHoldings(new TextDecoder().decode(answer))
  }

  /** The DAG under `cid` as a CARv1 stream (depth first, no duplicates), unverified; undefined when the peer does not have it. */
  async car (cid: CID, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array> | undefined> {
    const res = await this.send(`/ipfs/${cid.toString()}?format=car&dag-scope=all`, 'application/vnd.ipld.car; version=1; order=dfs; dups=n', signal)
    if (res === undefined) return undefined
    return chunksOf(decodedBody(this.url, `the CAR of ${cid.toString()} from ${this.url}`, res.headers, res.body, this.codings, { maxRatio: MAX_CAR_RATIO }))
  }

  /** The blocks of file `cid` that hold bytes `start` to `end` (inclusive), and the nodes above them, as a CARv1 stream, unverified; undefined when the peer does not have it. */
  async carRange (cid: CID, start: number, end: number, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array> | undefined> {
    const res = await this.send(`/ipfs/${cid.toString()}?format=car&dag-scope=entity&entity-bytes=${start}:${end}`, 'application/vnd.ipld.car; version=1; order=dfs; dups=n', signal)
    if (res === undefined) return undefined
    return chunksOf(decodedBody(this.url, `the CAR of bytes ${start}-${end} of ${cid.toString()} from ${this.url}`, res.headers, res.body, this.codings, { maxRatio: MAX_CAR_RATIO }))
  }

  private async send (path: string, accept: string, signal?: AbortSignal): Promise<HttpResponse | undefined> {
    let res: HttpResponse
    try {
      const headers: Record<string, string> = { accept }
      if (this.codings.length > 0) headers['accept-encoding'] = this.codings.join(', ')
      res = await pool(this.limits).get(this.url + path, { headers, signal })
    } catch (err) {
      if (signal?.aborted === true) throw err
      throw new PeerError(this.url, `cannot reach ${this.url}: ${(err as Error).message}`)
    }
    if (res.status === 404) { discard(res); return undefined }
    if (res.status !== 200) {
      discard(res)
      throw new PeerError(this.url, `${this.url}${path} answered HTTP ${res.status}`)
    }
    return res
  }

  private async small (path: string, accept: string, max: number, given?: AbortSignal): Promise<Uint8Array | undefined> {
    // A small answer that trickles in is cut off: it gets a few stall periods in all.
    const ms = 6 * this.limits.idleMs
    const deadline = AbortSignal.timeout(ms)
    const signal = given === undefined ? deadline : AbortSignal.any([given, deadline])
    try {
      const res = await this.send(path, accept, signal)
      if (res === undefined) return undefined
      try {
        // Decoded whole once in: for one block, a stream's set-up and thread-pool round trips cost more than the decoding.
        const coding = responseCoding(this.url, `${this.url}${path}`, res.headers, res.body, this.codings)
        const bytes = await collectAtMost(res.body, max, () => new PeerError(this.url, `${this.url}${path} sent more than ${max} bytes`))
        return coding === undefined ? bytes : decodedBytes(this.url, `${this.url}${path}`, coding, bytes, max)
      } catch (err) {
        res.body.destroy()
        if (err instanceof PeerError || signal.aborted) throw err
        throw new PeerError(this.url, `${this.url}${path}: ${bodyFailure(err as Error).message}`)
      }
    } catch (err) {
      if (deadline.aborted && given?.aborted !== true) throw new PeerError(this.url, `${this.url}${path} did not answer in full within ${ms / 1000} s`)
      throw err
    }
  }
}

/** A response body's error in words: Node says only "aborted" when the peer closed the connection before the body ended. */
function bodyFailure (err: Error): Error {
  return err.message === 'aborted' ? new Error('the peer closed the connection before the body ended') : err
}

/** Most bytes queued from a response before the socket is paused. */
const QUEUE_HIGH_WATER = 8 * 1024 * 1024

/**
 * The body's chunks, read with `data` events: `for await` over a stream
 * costs about as much per chunk as the bytes themselves (a CAR read at half
 * the speed of `data` events on loopback).
 */
async function * chunksOf (body: Readable): AsyncGenerator<Uint8Array> {
  const queue: Buffer[] = []
  let queued = 0
  let ended = false
  let failed: Error | undefined
  let wake: (() => void) | undefined
  body.on('data', (chunk: Buffer) => {
    queue.push(chunk)
    queued += chunk.length
    if (queued >= QUEUE_HIGH_WATER) body.pause()
    wake?.()
  })
  body.on('end', () => { ended = true; wake?.() })
  body.on('error', (err: Error) => { failed = err; wake?.() })
  try {
    for (;;) {
      if (queue.length > 0) {
        const piece = queue.shift()!
        queued -= piece.length
        if (queued < QUEUE_HIGH_WATER) body.resume()
        yield piece
        continue
      }
      if (failed !== undefined) throw bodyFailure(failed)
      if (ended) return
      await new Promise<void>(resolve => { wake = resolve })
      wake = undefined
    }
  } finally {
    if (!ended) body.destroy()
  }
}
