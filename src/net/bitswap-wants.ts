import type { CID } from 'multiformats/cid'

/** Fetches single blocks over bitswap (Helia's networked blockstore fits). */
export interface BitswapSource {
  get: (cid: CID, options: { signal: AbortSignal }) => Iterable<Uint8Array> | AsyncIterable<Uint8Array>
}

/** Times a block is wanted over bitswap before it counts as unavailable. */
export const BITSWAP_ATTEMPTS = 3

/**
 * Wants in flight at once. 8 came in when wants went unanswered with many in
 * flight, together with p2p.ts's larger send queue (Helia's default of 10
 * dropped blocks). With that queue no want went unanswered at 32, and a NAR
 * closure came over bitswap in 9.7 s where 8 took 11.2 s (bench/p2p.mjs).
 */
const WANTS_AT_ONCE = 32

/** At most `size` tasks at a time; the rest wait their turn. */
class Slots {
  private free: number
  private readonly waiting: Array<() => void> = []
  constructor (size: number) { this.free = size }

  async run<T> (task: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--
    else await new Promise<void>(resolve => this.waiting.push(resolve))
    try {
      return await task()
    } finally {
      const next = this.waiting.shift()
      if (next !== undefined) next()
      else this.free++
    }
  }
}

async function collectBytes (parts: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const all: Uint8Array[] = []
  for await (const part of parts) all.push(part)
  return all.length === 1 ? all[0]! : Buffer.concat(all)
}

/** `promise`, or a rejection after `ms`, whichever comes first. */
async function withDeadline<T> (promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(message)), ms) })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
    promise.catch(() => {}) // a late failure of the abandoned attempt is of no interest
  }
}

/** Wants blocks over bitswap: a few at a time, each with a deadline, asked again when unanswered. */
export class BitswapWants {
  private readonly slots = new Slots(WANTS_AT_ONCE)

  constructor (private readonly bitswap: BitswapSource, private readonly stallMs: number, private readonly log?: { debug: (m: string) => void }) {}

  /** The bytes bitswap gave for `cid` (unchecked), or undefined when it gave none in BITSWAP_ATTEMPTS tries. */
  async want (cid: CID): Promise<Uint8Array | undefined> {
    const ms = this.stallMs
    // A want can go unanswered under load (seen with many in flight): ask again, a few times, before giving up.
    for (let attempt = 0; attempt < BITSWAP_ATTEMPTS; attempt++) {
      const timeout = AbortSignal.timeout(ms)
      try {
        // The deadline is enforced here too: a want stuck inside bitswap must not hang the request.
        return await this.slots.run(async () => await withDeadline(collectBytes(this.bitswap.get(cid, { signal: timeout })), ms + 1_000, `bitswap gave no answer for ${cid.toString()} within ${ms} ms`))
      } catch (err) {
        const causes = (err as { errors?: Error[] }).errors?.map(e => e.message).join('; ')
        this.log?.debug(`bitswap (attempt ${attempt + 1}): ${(err as Error).message}${causes === undefined ? '' : ` (${causes})`}`)
      }
    }
    return undefined
  }
}
