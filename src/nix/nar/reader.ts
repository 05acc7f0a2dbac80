import { NarFormatError } from '../../errors.js'

/** Pulls exact byte counts out of an async stream of chunks, without copying large reads. */
export class ByteReader {
  private readonly source: AsyncIterator<Uint8Array>
  private head: Uint8Array = new Uint8Array(0)
  /** Bytes consumed so far. */
  offset = 0

  constructor (source: AsyncIterable<Uint8Array>) {
    this.source = source[Symbol.asyncIterator]()
  }

  private async fill (): Promise<boolean> {
    while (this.head.length === 0) {
      const next = await this.source.next()
      if (next.done === true) return false
      this.head = next.value
    }
    return true
  }

  /** Reads exactly `n` bytes into one array; for headers and short strings. */
  async readExact (n: number, what: string): Promise<Uint8Array> {
    if (this.head.length >= n) {
      const out = this.head.subarray(0, n)
      this.head = this.head.subarray(n)
      this.offset += n
      return out
    }
    const out = new Uint8Array(n)
    let got = 0
    while (got < n) {
      if (!await this.fill()) throw new NarFormatError(`NAR is truncated: ${what} needs ${n - got} more bytes`, this.offset)
      const take = Math.min(n - got, this.head.length)
      out.set(this.head.subarray(0, take), got)
      this.head = this.head.subarray(take)
      got += take
      this.offset += take
    }
    return out
  }

  /** Yields the next `n` bytes as they arrive, in slices of the source chunks. */
  async * readChunks (n: number, what: string): AsyncGenerator<Uint8Array> {
    let left = n
    while (left > 0) {
      if (!await this.fill()) throw new NarFormatError(`NAR is truncated: ${what} needs ${left} more bytes`, this.offset)
      const take = Math.min(left, this.head.length)
      const out = this.head.subarray(0, take)
      this.head = this.head.subarray(take)
      left -= take
      this.offset += take
      yield out
    }
  }

  /** True when the stream has no more bytes. */
  async atEnd (): Promise<boolean> {
    return !await this.fill()
  }
}
