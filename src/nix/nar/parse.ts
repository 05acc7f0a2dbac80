import { NarFormatError } from '../../errors.js'
import type { NarEvent } from './events.js'
import { ByteReader } from './reader.js'
import { NAR_MAGIC, padding } from './wire.js'

/** Longest token or name the parser accepts (Linux NAME_MAX is 255). */
const MAX_NAME_BYTES = 255
/** Longest symlink target the parser accepts (Linux PATH_MAX). */
const MAX_TARGET_BYTES = 4096
/** Largest file size: Number can count bytes exactly up to 2^53. */
const MAX_FILE_BYTES = Number.MAX_SAFE_INTEGER

const decoder = new TextDecoder()

function compareBytes (a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  return a.length - b.length
}

/** What the NAR grammar asks of the bytes: the next `n` bytes, or a file's contents (the caller streams or skips them). */
export type GrammarStep =
  | { kind: 'take', n: number, what: string }
  | { kind: 'event', event: Exclude<NarEvent, { type: 'file' }> }
  | { kind: 'file', name?: Uint8Array, executable: boolean, size: number }

type Grammar<T> = Generator<GrammarStep, T, Uint8Array | undefined>

function * take (n: number, what: string): Grammar<Uint8Array> {
  return (yield { kind: 'take', n, what })!
}

function * int (offset: () => number, what: string): Grammar<number> {
  const at = offset()
  const bytes = yield * take(8, what)
  const value = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)
  if (value > BigInt(MAX_FILE_BYTES)) throw new NarFormatError(`${what} ${value} is too large`, at)
  return Number(value)
}

function * pad (offset: () => number, length: number): Grammar<void> {
  const n = padding(length)
  if (n === 0) return
  const at = offset()
  const bytes = yield * take(n, 'padding')
  if (bytes.some(b => b !== 0)) throw new NarFormatError('non-zero padding', at)
}

function * string (offset: () => number, max: number, what: string): Grammar<Uint8Array> {
  const at = offset()
  const length = yield * int(offset, `length of ${what}`)
  if (length > max) throw new NarFormatError(`${what} is ${length} bytes, longer than ${max}`, at)
  const value = Uint8Array.from(yield * take(length, what))
  yield * pad(offset, length)
  return value
}

function * token (offset: () => number): Grammar<string> {
  return decoder.decode(yield * string(offset, 64, 'token'))
}

function * expect (offset: () => number, want: string): Grammar<void> {
  const at = offset()
  const got = yield * token(offset)
  if (got !== want) throw new NarFormatError(`expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`, at)
}

function checkName (name: Uint8Array, at: number): void {
  if (name.length === 0) throw new NarFormatError('empty entry name', at)
  if (name.includes(0x2f)) throw new NarFormatError('entry name contains "/"', at)
  if (name.includes(0)) throw new NarFormatError('entry name contains NUL', at)
  if ((name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)) {
    throw new NarFormatError(`entry name ${JSON.stringify(decoder.decode(name))} is not allowed`, at)
  }
}

/**
 * The NAR grammar, strictly: bad magic, unknown tokens, unsorted or duplicate
 * entries, bad names, bad padding throw `NarFormatError`. It asks for bytes
 * (a synchronous generator, so that a checker fed chunk by chunk costs no
 * promise per token); `offset` tells where the next byte is. It ends after
 * the root node: whoever drives it decides what trailing bytes mean.
 */
export function * narGrammar (offset: () => number): Grammar<void> {
  const magicAt = offset()
  let magic: Uint8Array
  try {
    magic = yield * string(offset, 64, 'magic')
  } catch {
    magic = new Uint8Array(0)
  }
  if (decoder.decode(magic) !== NAR_MAGIC) throw new NarFormatError('not a NAR: bad magic', magicAt)

  // The last name of every open directory, to enforce strict sorting.
  const dirs: Array<Uint8Array | null> = []

  // Reads one node after its "(" (a file's contents are the caller's); returns true when it opened a directory.
  function * node (name: Uint8Array | undefined): Grammar<boolean> {
    yield * expect(offset, '(')
    yield * expect(offset, 'type')
    const typeAt = offset()
    const type = yield * token(offset)
    if (type === 'regular') {
      let executable = false
      let tag = yield * token(offset)
      if (tag === 'executable') {
        executable = true
        yield * expect(offset, '')
        tag = yield * token(offset)
      }
      if (tag !== 'contents') throw new NarFormatError(`expected "contents", got ${JSON.stringify(tag)}`, offset())
      const size = yield * int(offset, 'file size')
      yield { kind: 'file', ...(name === undefined ? {} : { name }), executable, size }
      yield * pad(offset, size)
      yield * expect(offset, ')')
      return false
    }
    if (type === 'symlink') {
      yield * expect(offset, 'target')
      const targetAt = offset()
      const target = yield * string(offset, MAX_TARGET_BYTES, 'symlink target')
      if (target.length === 0 || target.includes(0)) throw new NarFormatError('symlink target is empty or contains NUL', targetAt)
      yield * expect(offset, ')')
      yield { kind: 'event', event: { type: 'symlink', ...(name === undefined ? {} : { name }), target } }
      return false
    }
    if (type === 'directory') {
      yield { kind: 'event', event: { type: 'directory', ...(name === undefined ? {} : { name }) } }
      dirs.push(null)
      return true
    }
    throw new NarFormatError(`unknown node type ${JSON.stringify(type)}`, typeAt)
  }

  if (!(yield * node(undefined))) return
  // Inside directories: each step reads either an entry or the directory's closing ")".
  while (dirs.length > 0) {
    const at = offset()
    const tag = yield * token(offset)
    if (tag === ')') {
      dirs.pop()
      yield { kind: 'event', event: { type: 'end' } }
      if (dirs.length > 0) yield * expect(offset, ')') // closes the parent's "entry ("
      continue
    }
    if (tag !== 'entry') throw new NarFormatError(`expected "entry" or ")", got ${JSON.stringify(tag)}`, at)
    yield * expect(offset, '(')
    yield * expect(offset, 'name')
    const nameAt = offset()
    const name = yield * string(offset, MAX_NAME_BYTES, 'entry name')
    checkName(name, nameAt)
    const prev = dirs[dirs.length - 1]
    if (prev != null && compareBytes(prev, name) >= 0) {
      throw new NarFormatError(`entry ${JSON.stringify(decoder.decode(name))} is ${compareBytes(prev, name) === 0 ? 'a duplicate' : 'out of order'}`, nameAt)
    }
    dirs[dirs.length - 1] = name
    yield * expect(offset, 'node')
    const isDir = yield * node(name)
    if (!isDir) yield * expect(offset, ')')
  }
}

/**
 * Parses NAR bytes into events, strictly (see narGrammar); truncation and
 * trailing bytes throw `NarFormatError` too. A file's `contents` must be
 * consumed (or is skipped) before the next event is pulled.
 */
export async function * parseNar (source: AsyncIterable<Uint8Array>): AsyncGenerator<NarEvent> {
  const r = new ByteReader(source)
  const grammar = narGrammar(() => r.offset)
  let resume = (): IteratorResult<GrammarStep, void> => grammar.next()
  for (let step = resume(); step.done !== true; step = resume()) {
    const s = step.value
    if (s.kind === 'take') {
      // A short read is the grammar's to judge (a truncated magic is a bad magic).
      try {
        const bytes = await r.readExact(s.n, s.what)
        resume = () => grammar.next(bytes)
      } catch (err) {
        resume = () => grammar.throw(err)
      }
    } else if (s.kind === 'event') {
      yield s.event
      resume = () => grammar.next()
    } else {
      let read = 0
      let started = false
      const contents: AsyncIterable<Uint8Array> = {
        [Symbol.asyncIterator]: () => {
          if (started) throw new NarFormatError('file contents can only be read once')
          started = true
          return (async function * () {
            for await (const chunk of r.readChunks(s.size, 'file contents')) {
              read += chunk.length
              yield chunk
            }
          })()
        }
      }
      yield { type: 'file', ...(s.name === undefined ? {} : { name: s.name }), executable: s.executable, size: s.size, contents }
      // Whatever the consumer left unread is skipped, so the next token starts where it must.
      started = true // contents read after this point would come from the wrong place
      for await (const _ of r.readChunks(s.size - read, 'file contents')) { /* skip */ }
      resume = () => grammar.next()
    }
  }
  if (!await r.atEnd()) throw new NarFormatError('trailing bytes after the NAR', r.offset)
}
