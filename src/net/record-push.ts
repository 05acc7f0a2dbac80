import type { CacheRecord } from '../ipfs/ipns.js'

/** Where a record can be put: a routing server (or the DHT, through the same shape). */
export interface RecordTarget {
  /** how logs name it (a URL) */
  name: string
  putRecord: (name: string, bytes: Uint8Array, options: { signal?: AbortSignal }) => Promise<void>
}

/** How often the own record is looked at for a new sequence (another process may have published). */
const PUSH_CHECK_MS = 10_000

/** Puts `record` to every target at once; says which failed and why (never throws). */
export async function pushRecord (record: CacheRecord, targets: RecordTarget[], log: { info: (m: string) => void, warn: (m: string) => void }): Promise<RecordTarget[]> {
  const failed: RecordTarget[] = []
  await Promise.all(targets.map(async target => {
    try {
      await target.putRecord(record.name, record.bytes, { signal: AbortSignal.timeout(PUSH_CHECK_MS) })
      log.info(`/ipns/${record.name}: record ${record.sequence} put to ${target.name}`)
    } catch (err) {
      failed.push(target)
      log.warn(`/ipns/${record.name}: putting record ${record.sequence} to ${target.name} failed: ${(err as Error).message}`)
    }
  }))
  return failed
}

/**
 * Keeps the targets holding the newest own record: puts it at start, then
 * whenever its sequence grows (a publish, a republish), and again to a target
 * that failed until it takes it.
 */
export function startRecordPush (current: () => Promise<CacheRecord | undefined>, targets: RecordTarget[], log: { info: (m: string) => void, warn: (m: string) => void }): { stop: () => void } {
  /** the sequence each target holds, as far as this node knows */
  const held = new Map<RecordTarget, bigint>()
  let running = false
  const check = async (): Promise<void> => {
    const record = await current()
    if (record === undefined) return
    const behind = targets.filter(t => (held.get(t) ?? -1n) < record.sequence)
    if (behind.length === 0) return
    const failed = await pushRecord(record, behind, log)
    for (const target of behind) if (!failed.includes(target)) held.set(target, record.sequence)
  }
  const run = (): void => {
    if (running) return
    running = true
    check().catch((err: Error) => log.warn(`putting the own record to routing servers failed: ${err.message}`)).finally(() => { running = false })
  }
  run()
  const timer = setInterval(run, PUSH_CHECK_MS)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}

/** Puts `record` to the routing servers at `urls` once (a publish or republish run from the command line). */
export async function putToRoutingServers (record: CacheRecord, urls: string[], log: { info: (m: string) => void, warn: (m: string) => void }): Promise<void> {
  if (urls.length === 0) return
  const { DelegatedRouting } = await import('./delegated.js')
  const servers = urls.map(url => new DelegatedRouting(url))
  try {
    await pushRecord(record, servers, log)
  } finally {
    await Promise.all(servers.map(async s => await s.stop()))
  }
}
