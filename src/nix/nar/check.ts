import { IntegrityError, NarFormatError } from '../../errors.js'
import { NarHasher } from '../hash.js'
import { narGrammar, type GrammarStep } from './parse.js'

/**
 * Checks a NAR's structure as its bytes pass by, for streams that are
 * forwarded rather than parsed (a NAR served to Nix, a NAR imported from
 * upstream): bad names (`..`, `/`, NUL), duplicate or unsorted entries,
 * truncation and trailing bytes all throw `NarFormatError` from the `update`
 * that brought them, before those bytes go further. Synchronous: it drives
 * the parser's grammar itself, and skips file contents without looking.
 */
export class NarChecker {
  private offset = 0
  private readonly grammar = narGrammar(() => this.offset)
  /** what the grammar waits for; undefined once the NAR has ended */
  private step: GrammarStep | undefined
  /** bytes gathered for a `take` that spans chunks */
  private gathered?: Uint8Array
  private got = 0
  /** file contents still to pass */
  private skipping = 0
  private error?: unknown

  constructor () {
    this.advance(() => this.grammar.next())
  }

  /** Moves the grammar on; steps that need no bytes (events, empty strings and files) are passed at once. */
  private advance (resume: () => IteratorResult<GrammarStep, void>): void {
    try {
      let r = resume()
      for (;;) {
        if (r.done === true) { this.step = undefined; break }
        const s = r.value
        if (s.kind === 'event' || (s.kind === 'file' && s.size === 0)) r = this.grammar.next()
        else if (s.kind === 'take' && s.n === 0) r = this.grammar.next(new Uint8Array(0))
        else { this.step = s; break }
      }
    } catch (err) {
      this.error = err
      throw err
    }
    this.skipping = this.step?.kind === 'file' ? this.step.size : 0
    this.gathered = undefined
    this.got = 0
  }

  /** Checks the next bytes; throws `NarFormatError` if they break the format. */
  update (chunk: Uint8Array): void {
    if (this.error !== undefined) throw this.error
    let pos = 0
    while (pos < chunk.length) {
      const s = this.step
      if (s === undefined) {
        this.error = new NarFormatError('trailing bytes after the NAR', this.offset)
        throw this.error
      }
      if (s.kind === 'file') {
        const n = Math.min(this.skipping, chunk.length - pos)
        pos += n
        this.offset += n
        this.skipping -= n
        if (this.skipping === 0) this.advance(() => this.grammar.next())
      } else if (s.kind === 'take') {
        const want = s.n - this.got
        if (this.got === 0 && chunk.length - pos >= s.n) {
          const bytes = chunk.subarray(pos, pos + s.n)
          pos += s.n
          this.offset += s.n
          this.advance(() => this.grammar.next(bytes))
          continue
        }
        this.gathered ??= new Uint8Array(s.n)
        const n = Math.min(want, chunk.length - pos)
        this.gathered.set(chunk.subarray(pos, pos + n), this.got)
        this.got += n
        pos += n
        this.offset += n
        if (this.got === s.n) {
          const bytes = this.gathered
          this.advance(() => this.grammar.next(bytes))
        }
      }
    }
  }

  /** Ends the stream; throws `NarFormatError` if the NAR is incomplete. */
  end (): void {
    if (this.error !== undefined) throw this.error
    const s = this.step
    if (s === undefined) return
    const left = s.kind === 'file' ? this.skipping : s.kind === 'take' ? s.n - this.got : 0
    const what = s.kind === 'take' ? s.what : 'file contents'
    // Told to the grammar, which may judge it otherwise (a truncated magic is a bad magic).
    const truncated = new NarFormatError(`NAR is truncated: ${what} needs ${left} more bytes`, this.offset)
    this.advance(() => this.grammar.throw(truncated))
    if (this.step !== undefined) throw truncated
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
    try { checker.update(chunk) } catch (err) { malformed(err) }
    yield chunk
  }
  const narHash = hasher.digest()
  if (hasher.size !== expected.narSize || (expected.narHash !== undefined && narHash !== expected.narHash)) {
    throw new IntegrityError(`${what} is ${hasher.size} bytes with ${narHash}, its narinfo says ${expected.narSize} bytes with ${expected.narHash} (truncated or tampered)`)
  }
  try { checker.end() } catch (err) { malformed(err) }
}
