import type { Registry } from 'prom-client'
import { loadRecord } from '../cache/records.js'
import type { FetchCounters, FetchedBytes } from '../net/fetcher.js'
import type { FallbackCounters } from '../upstream/fallback.js'
import { counterOf, gaugeOf } from './metrics.js'

/** Where a node's metrics (beside the HTTP ones) are read from. */
export interface NodeMetricSources {
  repo: string
  /** the caches served, own first */
  names: string[]
  blocks: { counters: FetchCounters, bytes: FetchedBytes }
  /** the repo's block store */
  local: { size: number }
  quorum: { refusals: number, disputes: number }
  /** IPNS records from peers refused, by error code */
  refusedRecords: ReadonlyMap<string, number>
  upstream?: { counters: FallbackCounters }
  /** peers this node can fetch from now: libp2p peers connected, HTTP gateways not skipped for corrupt blocks */
  peers?: () => { libp2p: number, http: number }
}

/** Where served blocks come from, as `nixipfs_blocks_served_total` names them. */
const BLOCK_SOURCES = ['local', 'http', 'car', 'bitswap'] as const
/** Upstream fallback events, as `nixipfs_upstream_total` names them. */
const UPSTREAM_EVENTS = ['narInfoHits', 'narInfoMisses', 'imported', 'errors'] as const

/** Registers the node's metrics beside the HTTP ones: blocks and bytes by source, verification, quorum, records, upstream, peers. */
export function registerNodeMetrics (registry: Registry, { repo, names, blocks, local, quorum, refusedRecords, upstream, peers }: NodeMetricSources): void {
  const c = blocks.counters
  counterOf(registry, 'nixipfs_blocks_served_total', 'Blocks read for requests, by where they came from (local: the repo; http: a single block from an HTTP peer; car: a block of a CAR stream from an HTTP peer; bitswap: a libp2p peer; upstream: a block of a NAR streamed from an HTTP binary cache, stored as it passed).', ['source'],
    () => [...BLOCK_SOURCES.map(source => [{ source }, c[source]] as const), ...(upstream === undefined ? [] : [[{ source: 'upstream' }, upstream.counters.narBlocks] as const])])
  counterOf(registry, 'nixipfs_fetched_bytes_total', 'Bytes fetched and checked, by where they came from (http, car, bitswap: blocks from peers; upstream: NAR bytes from HTTP binary caches, uncompressed).', ['source'],
    () => [...(['http', 'car', 'bitswap'] as const).map(source => [{ source }, blocks.bytes[source]] as const), ...(upstream === undefined ? [] : [[{ source: 'upstream' }, upstream.counters.narBytes] as const])])
  counterOf(registry, 'nixipfs_verification_failures_total', 'Blocks from peers that did not hash to their CID.', [], () => [[{}, c.corrupt]])
  counterOf(registry, 'nixipfs_blocks_unavailable_total', 'Blocks no source could supply.', [], () => [[{}, c.unavailable]])
  counterOf(registry, 'nixipfs_quorum_refusals_total', 'Narinfos and realisations refused by the trust policy.', [], () => [[{}, quorum.refusals]])
  counterOf(registry, 'nixipfs_disputes_recorded_total', 'New or changed disputes recorded.', [], () => [[{}, quorum.disputes]])
  gaugeOf(registry, 'nixipfs_store_blocks', 'Blocks in the repo\'s block store.', [], () => [[{}, local.size]])
  counterOf(registry, 'nixipfs_records_refused_total', 'IPNS records from peers refused, by error code (rollback, conflict, expired, bad signature…).', ['code'],
    () => [...refusedRecords].map(([code, n]) => [{ code }, n] as const))
  const load = async (): Promise<Array<{ name: string, sequence: number, expiry: number }>> => (await Promise.all(names.map(async name => {
    const record = await loadRecord(repo, name).catch(() => undefined)
    return record === undefined ? [] : [{ name, sequence: Number(record.sequence), expiry: Date.parse(record.validity) / 1000 }]
  }))).flat()
  // Both record gauges are collected at once in a scrape: they share one read of the records.
  let reading: ReturnType<typeof load> | undefined
  const records = async (): ReturnType<typeof load> => await (reading ??= load().finally(() => { reading = undefined }))
  gaugeOf(registry, 'nixipfs_record_sequence', 'Sequence of the newest record held, by cache.', ['name'], async () => (await records()).map(r => [{ name: r.name }, r.sequence] as const))
  gaugeOf(registry, 'nixipfs_record_expiry_seconds', 'When the newest record held expires (Unix time), by cache.', ['name'], async () => (await records()).map(r => [{ name: r.name }, r.expiry] as const))
  if (upstream !== undefined) {
    counterOf(registry, 'nixipfs_upstream_total', 'Upstream fallback: narinfo hits and misses, NARs imported, errors.', ['event'],
      () => UPSTREAM_EVENTS.map(event => [{ event }, upstream.counters[event]] as const))
  }
  if (peers !== undefined) {
    gaugeOf(registry, 'nixipfs_peers', 'Peers blocks can be fetched from now, by transport (libp2p: connected peers; http: trustless gateways not skipped for corrupt blocks).', ['transport'], () => {
      const now = peers()
      return [[{ transport: 'libp2p' }, now.libp2p], [{ transport: 'http' }, now.http]] as const
    })
  }
}
