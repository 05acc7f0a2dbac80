/** Bytes of fetched blocks held for their reader at most. */
const FRESH_BYTES = 32 * 1024 * 1024
/** How long a fetched block waits for its reader at most. */
const FRESH_MS = 30_000

/**
 * Blocks fetched ahead of their reader and already checked against their
 * CIDs, held until the reader takes them: otherwise it reads each back from
 * the repo and hashes it a second time (a third of a client's SHA-256 work).
 * Bounded: once full, further blocks are left to the repo, so the reader,
 * which reads in order, finds the next blocks it needs here.
 */
export class FreshBlocks {
  private readonly blocks = new Map<string, { bytes: Uint8Array, at: number }>()
  private bytes = 0

  /** Holds `bytes` of the block `key` for its reader, if there is room. */
  add (key: string, bytes: Uint8Array, now = Date.now()): void {
    // Insertion order is age order: what its reader never came for goes first.
    for (const [k, b] of this.blocks) {
      if (now - b.at < FRESH_MS) break
      this.remove(k, b.bytes)
    }
    if (this.blocks.has(key) || this.bytes + bytes.length > FRESH_BYTES) return
    this.blocks.set(key, { bytes, at: now })
    this.bytes += bytes.length
  }

  /** The checked bytes of `key`, once, if held. */
  take (key: string): Uint8Array | undefined {
    const held = this.blocks.get(key)
    if (held !== undefined) this.remove(key, held.bytes)
    return held?.bytes
  }

  private remove (key: string, bytes: Uint8Array): void {
    this.blocks.delete(key)
    this.bytes -= bytes.length
  }
}
