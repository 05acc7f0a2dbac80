import { NarFormatError } from '../../errors.js'
import type { NarEvent } from './events.js'
import { NAR_MAGIC, narInt, narString, padding } from './wire.js'

/** Bytes gathered before a chunk is emitted; file contents above it pass through uncopied. */
const FLUSH_BYTES = 256 * 1024

const T = (s: string): Uint8Array => narString(s)
const MAGIC = T(NAR_MAGIC)
const OPEN = T('(')
const CLOSE = T(')')
const TYPE_REGULAR = Uint8Array.from([...T('type'), ...T('regular')])
const TYPE_SYMLINK = Uint8Array.from([...T('type'), ...T('symlink')])
const TYPE_DIRECTORY = Uint8Array.from([...T('type'), ...T('directory')])
const EXECUTABLE = Uint8Array.from([...T('executable'), ...T('')])
const CONTENTS = T('contents')
const TARGET = T('target')
const ENTRY_NAME = Uint8Array.from([...T('entry'), ...OPEN, ...T('name')])
const NODE = T('node')
const ZEROS = new Uint8Array(8)

/**
 * Serializes NAR events into NAR bytes, streaming; small pieces are batched
 * into larger chunks. With `reuseBuffer` each chunk is valid only until the
 * next is asked for (as the chunks of `walkPath(…, { reuseBuffers: true })`).
 */
export async function * encodeNar (events: AsyncIterable<NarEvent>, options: { reuseBuffer?: boolean } = {}): AsyncGenerator<Uint8Array> {
  let buf = new Uint8Array(FLUSH_BYTES)
  let used = 0
  const put = (bytes: Uint8Array): void => {
    if (used + bytes.length > buf.length) {
      const grown = new Uint8Array(Math.max(buf.length * 2, used + bytes.length))
      grown.set(buf.subarray(0, used))
      buf = grown
    }
    buf.set(bytes, used)
    used += bytes.length
  }
  const take = (): Uint8Array => {
    // A reused buffer is written again only after the consumer asked for more.
    const out = options.reuseBuffer === true ? buf.subarray(0, used) : buf.slice(0, used)
    used = 0
    return out
  }
  // One flag per open directory: was it an entry of its parent (then it owes a closing paren)?
  const open: boolean[] = []
  const startNode = (name: Uint8Array | undefined): void => {
    if (name !== undefined) { put(ENTRY_NAME); put(narString(name)); put(NODE) }
    put(OPEN)
  }
  const endEntry = (name: Uint8Array | undefined): void => {
    if (name !== undefined) put(CLOSE)
  }

  put(MAGIC)
  for await (const ev of events) {
    switch (ev.type) {
      case 'directory':
        startNode(ev.name)
        put(TYPE_DIRECTORY)
        open.push(ev.name !== undefined)
        break
      case 'end':
        put(CLOSE)
        if (open.pop() === true) put(CLOSE)
        break
      case 'symlink':
        startNode(ev.name)
        put(TYPE_SYMLINK); put(TARGET); put(narString(ev.target)); put(CLOSE)
        endEntry(ev.name)
        break
      case 'file': {
        startNode(ev.name)
        put(TYPE_REGULAR)
        if (ev.executable) put(EXECUTABLE)
        put(CONTENTS); put(narInt(ev.size))
        let written = 0
        for await (const chunk of ev.contents) {
          written += chunk.length
          if (written > ev.size) throw new NarFormatError(`file contents are longer than the ${ev.size} bytes announced`)
          if (chunk.length >= FLUSH_BYTES / 4) {
            if (used > 0) yield take()
            yield chunk
          } else {
            put(chunk)
            if (used >= FLUSH_BYTES) yield take()
          }
        }
        if (written !== ev.size) throw new NarFormatError(`file contents are ${written} bytes, not the ${ev.size} announced`)
        put(ZEROS.subarray(0, padding(ev.size))); put(CLOSE)
        endEntry(ev.name)
        break
      }
    }
    if (used >= FLUSH_BYTES) yield take()
  }
  if (used > 0) yield take()
}
