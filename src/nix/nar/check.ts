import { IntegrityError, NarFormatError } from '../../errors.js'
import { NarHasher } from '../hash.js'
import { parseNar } from './parse.js'

/**
 * Checks a NAR's structure as its bytes pass by, for streams that are
 * forwarded rather than parsed (a NAR served to Nix, a NAR imported from
 * upstream): bad names (`..`, `/`, NUL), duplicate or unsorted entries,
 * truncation and trailing bytes all throw `NarFormatError` from the `update`
 * that brought them, before those bytes go further.
 */
export class NarChecker {
  /** the parser, waiting for its next chunk */
  private feed?: (next: IteratorResult<Uint8Array>) => void
  /** `update`/`end`, waiting for the parser to want more or to stop */
  private wake?: () => void
  private error?: unknown
  private finished = false
  private readonly run: Promise<void>

  constructor () {
    const source: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => ({
        next: async () => await new Promise<IteratorResult<Uint8Array>>(resolve => { this.feed = resolve; this.settle() })
      })
    }
    this.run = (async () => {
      for await (const event of parseNar(source)) {
        if (event.type === 'file') for await (const _ of event.contents) { /* contents need no checking */ }
      }
    })().then(() => { this.finished = true }, err => { this.error = err }).finally(() => this.settle())
  }

  private settle (): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }

  /** Resolves once the parser has taken everything given so far (or stopped). */
  private async idle (): Promise<void> {
    if (this.feed !== undefined || this.error !== undefined || this.finished) return
    await new Promise<void>(resolve => { this.wake = resolve })
  }

  private give (next: IteratorResult<Uint8Array>): void {
    const feed = this.feed!
    this.feed = undefined
    feed(next)
  }

  /** Checks the next bytes; throws `NarFormatError` if they break the format. */
  async update (chunk: Uint8Array): Promise<void> {
    await this.idle()
    if (this.error !== undefined) throw this.error
    if (this.finished) throw new NarFormatError('trailing bytes after the NAR')
    this.give({ done: false, value: chunk })
    await this.idle()
    if (this.error !== undefined) throw this.error
  }

  /** Ends the stream; throws `NarFormatError` if the NAR is incomplete. */
  async end (): Promise<void> {
    await this.idle()
    if (this.feed !== undefined) this.give({ done: true, value: undefined })
    await this.run
    if (this.error !== undefined) throw this.error
  }
}

/**
 * Passes a NAR's chunks on while checking them against its narinfo: the
 * structure (NarChecker), NarSize and NarHash (when known). A chunk that breaks the
 * structure or overruns the size is never passed on; a wrong hash or a short
 * NAR throws after the last chunk. `what` names the NAR in messages.
 */
export async function * checkedNar (chunks: AsyncIterable<Uint8Array>, expected: { narHash?: string, narSize: number }, what: string): AsyncGenerator<Uint8Array> {
  const hasher = new NarHasher()
  const checker = new NarChecker()
  const malformed = (err: unknown): never => {
    throw err instanceof NarFormatError ? new NarFormatError(`${what} is not a valid NAR: ${err.message}`) : err
  }
  for await (const chunk of chunks) {
    hasher.update(chunk)
    if (hasher.size > expected.narSize) throw new IntegrityError(`${what} is longer than its NarSize ${expected.narSize} (tampered)`)
    await checker.update(chunk).catch(malformed)
    yield chunk
  }
  const narHash = hasher.digest()
  if (hasher.size !== expected.narSize || (expected.narHash !== undefined && narHash !== expected.narHash)) {
    throw new IntegrityError(`${what} is ${hasher.size} bytes with ${narHash}, its narinfo says ${expected.narSize} bytes with ${expected.narHash} (truncated or tampered)`)
  }
  await checker.end().catch(malformed)
}
