import { loadRecord } from '../cache/records.js'
import type { FetchCounters } from '../net/fetcher.js'
import type { FallbackCounters } from '../upstream/fallback.js'
import type { MetricFamily } from './metrics.js'

/** Where a node's metrics (beside the HTTP ones) are read from. */
export interface NodeMetricSources {
  repo: string
  /** the caches served, own first */
  names: string[]
  blocks: { counters: FetchCounters }
  /** the repo's block store */
  local: { size: number }
  quorum: { refusals: number, disputes: number }
  /** IPNS records from peers refused, by error code */
  refusedRecords: ReadonlyMap<string, number>
  upstream?: { counters: FallbackCounters }
}

/** The node's metrics beside the HTTP ones. */
export async function nodeMetricFamilies ({ repo, names, blocks, local, quorum, refusedRecords, upstream }: NodeMetricSources): Promise<MetricFamily[]> {
  const c = blocks.counters
  const records = (await Promise.all(names.map(async name => ({ name, record: await loadRecord(repo, name).catch(() => undefined) })))).filter(r => r.record !== undefined)
  return [
    { name: 'nixipfs_blocks_served_total', help: 'Blocks read for requests, by where they came from.', type: 'counter', samples: (['local', 'http', 'car', 'bitswap'] as const).map(source => ({ labels: { source }, value: c[source] })) },
    { name: 'nixipfs_verification_failures_total', help: 'Blocks from peers that did not hash to their CID.', type: 'counter', samples: [{ value: c.corrupt }] },
    { name: 'nixipfs_blocks_unavailable_total', help: 'Blocks no source could supply.', type: 'counter', samples: [{ value: c.unavailable }] },
    { name: 'nixipfs_quorum_refusals_total', help: 'Narinfos and realisations refused by the trust policy.', type: 'counter', samples: [{ value: quorum.refusals }] },
    { name: 'nixipfs_disputes_recorded_total', help: 'New or changed disputes recorded.', type: 'counter', samples: [{ value: quorum.disputes }] },
    { name: 'nixipfs_store_blocks', help: 'Blocks in the repo\'s block store.', type: 'gauge', samples: [{ value: local.size }] },
    { name: 'nixipfs_records_refused_total', help: 'IPNS records from peers refused, by error code (rollback, conflict, expired, bad signature…).', type: 'counter', samples: [...refusedRecords].map(([code, value]) => ({ labels: { code }, value })) },
    { name: 'nixipfs_record_sequence', help: 'Sequence of the newest record held, by cache.', type: 'gauge', samples: records.map(r => ({ labels: { name: r.name }, value: Number(r.record!.sequence) })) },
    { name: 'nixipfs_record_expiry_seconds', help: 'When the newest record held expires (Unix time), by cache.', type: 'gauge', samples: records.map(r => ({ labels: { name: r.name }, value: Date.parse(r.record!.validity) / 1000 })) },
    ...(upstream === undefined
      ? []
      : [{ name: 'nixipfs_upstream_total', help: 'Upstream fallback: narinfo hits and misses, NARs imported, errors.', type: 'counter' as const, samples: Object.entries(upstream.counters).map(([event, value]) => ({ labels: { event }, value })) }])
  ]
}
