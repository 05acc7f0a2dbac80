import { CID } from 'multiformats/cid'
import type { BlockGetter } from '../ipfs/block.js'
import type { DurableWrites } from '../ipfs/blocks.js'
import { walkDag } from '../ipfs/dag.js'
import type { RemotePinStore, StoredPin } from './remote-pins.js'
import { formatBytes } from '../progress.js'

export interface PinWorkerOptions {
  store: RemotePinStore
  /** where blocks come from (the repo, then peers), keeping what they fetch */
  blocks: BlockGetter & { prefetch: (root: CID, signal?: AbortSignal) => Promise<void> }
  /** the repo's store, made durable before a pin is reported pinned */
  local: DurableWrites
  /** dials one of a request's origins (a libp2p or an HTTP multiaddr), best effort */
  dialOrigin: (address: string) => Promise<void>
  /** blocks fetched from peers so far (all requests): progress while a whole DAG comes in as one CAR stream */
  fetchedBlocks?: () => number
  /** called when a request is pinned */
  onPinned?: (pin: StoredPin) => void
  log: { info: (m: string) => void, warn: (m: string) => void, debug: (m: string) => void }
}

/** How long one origin may take to answer a dial. */
const DIAL_TIMEOUT_MS = 5_000
/** How often a request's progress details are brought up to date. */
const PROGRESS_MS = 1_000

/**
 * Works through queued pin requests one at a time: dials the request's
 * origins, fetches every block its CID reaches (each checked against its
 * CID, kept in the repo), makes them durable, and reports the request
 * pinned, or failed with the reason. A request removed while it is fetched
 * is given up.
 */
export function startPinWorker (options: PinWorkerOptions): { wake: () => void, stop: () => Promise<void> } {
  const { store, log } = options
  let running: Promise<void> | undefined
  let stopped = false
  const current = new AbortController()
  let again = false

  async function pinOne (p: StoredPin): Promise<void> {
    const id = p.requestid
    await store.setStatus(id, 'pinning', 'dialling origins')
    await Promise.all((p.pin.origins ?? []).map(async address => {
      await Promise.race([options.dialOrigin(address), new Promise((resolve) => setTimeout(resolve, DIAL_TIMEOUT_MS).unref())])
        .catch((err: Error) => log.debug(`pin ${id}: origin ${address}: ${err.message}`))
    }))
    const cid = CID.parse(p.pin.cid)
    // Given up when the request is removed or replaced, or the node stops.
    const gone = new AbortController()
    const signal = AbortSignal.any([gone.signal, current.signal])
    let blocks = 0
    let bytes = 0
    const started = Date.now()
    const fetchedBefore = options.fetchedBlocks?.() ?? 0
    const ticker = setInterval(() => {
      if (store.get(id) === undefined) gone.abort(new Error('the pin request was removed'))
      const fetched = options.fetchedBlocks === undefined ? '' : `, ${options.fetchedBlocks() - fetchedBefore} fetched from peers`
      store.progress(id, `walked ${blocks} blocks (${formatBytes(bytes)})${fetched} in ${Math.round((Date.now() - started) / 1000)} s`)
    }, PROGRESS_MS)
    try {
      const epoch = options.local.writeEpoch
      // A whole DAG in one CAR stream from an HTTP peer, when one has it; the walk takes what is missing block by block.
      await options.blocks.prefetch(cid, signal).catch((err: Error) => log.debug(`pin ${id}: prefetching ${cid.toString()}: ${err.message}`))
      for await (const block of walkDag(options.blocks, cid, { signal })) {
        blocks++
        bytes += block.bytes.length
      }
      await options.local.sync(epoch)
      const done = `${blocks} blocks (${formatBytes(bytes)}) in ${((Date.now() - started) / 1000).toFixed(1)} s`
      await store.setStatus(id, 'pinned', done)
      log.info(`pinned ${cid.toString()}${p.pin.name === undefined ? '' : ` (${p.pin.name})`}: ${done}`)
      const pinned = store.get(id)
      if (pinned !== undefined) options.onPinned?.(pinned)
    } catch (err) {
      if (signal.aborted) return
      await store.setStatus(id, 'failed', (err as Error).message)
      log.warn(`pinning ${cid.toString()} failed: ${(err as Error).message}`)
    } finally {
      clearInterval(ticker)
    }
  }

  async function drain (): Promise<void> {
    do {
      again = false
      // Each request once per pass: one whose status cannot be written (a full disk) must not spin.
      const tried = new Set<string>()
      for (let p = store.nextQueued(); p !== undefined && !stopped && !tried.has(p.requestid); p = store.nextQueued()) {
        tried.add(p.requestid)
        await pinOne(p).catch((err: Error) => log.warn(`pin ${p!.requestid}: ${err.message}`))
      }
    } while (again && !stopped)
  }

  const wake = (): void => {
    if (stopped) return
    if (running !== undefined) { again = true; return }
    running = drain().finally(() => { running = undefined })
  }
  wake()
  return {
    wake,
    stop: async () => {
      stopped = true
      current.abort(new Error('the node stops'))
      await running
    }
  }
}
