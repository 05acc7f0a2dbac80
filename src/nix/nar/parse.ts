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

/** Reads NAR primitives from a byte stream and checks padding. */
class NarReader {
  constructor (readonly r: ByteReader) {}

  async int (what: string): Promise<number> {
    const at = this.r.offset
    const bytes = await this.r.readExact(8, what)
    const value = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)
    if (value > BigInt(MAX_FILE_BYTES)) throw new NarFormatError(`${what} ${value} is too large`, at)
    return Number(value)
  }

  async pad (length: number): Promise<void> {
    const n = padding(length)
    if (n === 0) return
    const at = this.r.offset
    const bytes = await this.r.readExact(n, 'padding')
    if (bytes.some(b => b !== 0)) throw new NarFormatError('non-zero padding', at)
  }

  async bytes (max: number, what: string): Promise<Uint8Array> {
    const at = this.r.offset
    const length = await this.int(`length of ${what}`)
    if (length > max) throw new NarFormatError(`${what} is ${length} bytes, longer than ${max}`, at)
    const value = Uint8Array.from(await this.r.readExact(length, what))
    await this.pad(length)
    return value
  }

  async token (): Promise<string> {
    return decoder.decode(await this.bytes(64, 'token'))
  }

  async expect (want: string): Promise<void> {
    const at = this.r.offset
    const got = await this.token()
    if (got !== want) throw new NarFormatError(`expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`, at)
  }
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
 * Parses NAR bytes into events, strictly: bad magic, unknown tokens, unsorted
 * or duplicate entries, bad names, bad padding, truncation and trailing bytes
 * all throw `NarFormatError`. A file's `contents` must be consumed (or is
 * skipped) before the next event is pulled.
 */
export async function * parseNar (source: AsyncIterable<Uint8Array>): AsyncGenerator<NarEvent> {
  const nar = new NarReader(new ByteReader(source))
  const r = nar.r
  const magicAt = r.offset
  const magic = await nar.bytes(64, 'magic').catch(() => new Uint8Array(0))
  if (decoder.decode(magic) !== NAR_MAGIC) throw new NarFormatError('not a NAR: bad magic', magicAt)

  // The last name of every open directory, to enforce strict sorting.
  const dirs: Array<Uint8Array | null> = []

  // Parses one node after its "(" and yields its event(s); returns true when it opened a directory.
  async function * node (name: Uint8Array | undefined): AsyncGenerator<NarEvent, boolean> {
    await nar.expect('(')
    await nar.expect('type')
    const typeAt = r.offset
    const type = await nar.token()
    if (type === 'regular') {
      let executable = false
      let tag = await nar.token()
      if (tag === 'executable') {
        executable = true
        await nar.expect('')
        tag = await nar.token()
      }
      if (tag !== 'contents') throw new NarFormatError(`expected "contents", got ${JSON.stringify(tag)}`, r.offset)
      const size = await nar.int('file size')
      let read = 0
      let started = false
      const contents: AsyncIterable<Uint8Array> = {
        [Symbol.asyncIterator]: () => {
          if (started) throw new NarFormatError('file contents can only be read once')
          started = true
          return (async function * () {
            for await (const chunk of r.readChunks(size, 'file contents')) {
              read += chunk.length
              yield chunk
            }
          })()
        }
      }
      yield { type: 'file', name, executable, size, contents }
      // Whatever the consumer left unread is skipped, so the next token starts where it must.
      started = true // contents read after this point would come from the wrong place
      for await (const _ of r.readChunks(size - read, 'file contents')) { /* skip */ }
      await nar.pad(size)
      await nar.expect(')')
      return false
    }
    if (type === 'symlink') {
      await nar.expect('target')
      const targetAt = r.offset
      const target = await nar.bytes(MAX_TARGET_BYTES, 'symlink target')
      if (target.length === 0 || target.includes(0)) throw new NarFormatError('symlink target is empty or contains NUL', targetAt)
      await nar.expect(')')
      yield { type: 'symlink', name, target }
      return false
    }
    if (type === 'directory') {
      yield { type: 'directory', name }
      dirs.push(null)
      return true
    }
    throw new NarFormatError(`unknown node type ${JSON.stringify(type)}`, typeAt)
  }

  if (!(yield * node(undefined))) {
    if (!await r.atEnd()) throw new NarFormatError('trailing bytes after the NAR', r.offset)
    return
  }
  // Inside directories: each step reads either an entry or the directory's closing ")".
  while (dirs.length > 0) {
    const at = r.offset
    const tag = await nar.token()
    if (tag === ')') {
      dirs.pop()
      yield { type: 'end' }
      if (dirs.length > 0) await nar.expect(')') // closes the parent's "entry ("
      continue
    }
    if (tag !== 'entry') throw new NarFormatError(`expected "entry" or ")", got ${JSON.stringify(tag)}`, at)
    await nar.expect('(')
    await nar.expect('name')
    const nameAt = r.offset
    const name = await nar.bytes(MAX_NAME_BYTES, 'entry name')
    checkName(name, nameAt)
    const prev = dirs[dirs.length - 1]
    if (prev != null && compareBytes(prev, name) >= 0) {
      throw new NarFormatError(`entry ${JSON.stringify(decoder.decode(name))} is ${compareBytes(prev, name) === 0 ? 'a duplicate' : 'out of order'}`, nameAt)
    }
    dirs[dirs.length - 1] = name
    await nar.expect('node')
    const isDir = yield * node(name)
    if (!isDir) await nar.expect(')')
  }
  if (!await r.atEnd()) throw new NarFormatError('trailing bytes after the NAR', r.offset)
}
