import { describe, expect, it } from 'vitest'
import { CODINGS, codingOf, compressor, decompressor, negotiate } from '../src/codings.js'

describe('content codings', () => {
  it('offers zstd (on every Node), then br, then gzip', () => {
    expect(CODINGS).toEqual(['zstd', 'br', 'gzip'])
  })

  it('negotiates Accept-Encoding: our preference among what the client takes (q > 0, * for the rest)', () => {
    const cases: Array<[string | undefined, string | undefined]> = [
      [undefined, undefined],
      ['', undefined],
      ['identity', undefined],
      ['gzip', 'gzip'],
      ['gzip, br', 'br'],
      ['GZIP;q=0.5, BR;q=0', 'gzip'],
      ['br;q=0, gzip;q=0', undefined],
      ['*', CODINGS[0]],
      ['*;q=0, gzip', 'gzip'],
      ['deflate, compress', undefined],
      ['zstd', 'zstd']
    ]
    for (const [header, want] of cases) expect(negotiate(header), String(header)).toBe(want)
  })

  it('reads Content-Encoding: none or identity, one asked for, or an unknown name', () => {
    expect(codingOf(undefined)).toBeUndefined()
    expect(codingOf('identity')).toBeUndefined()
    expect(codingOf(' BR ')).toBe('br')
    expect(codingOf('gzip', [])).toEqual({ unknown: 'gzip' })
    expect(codingOf('compress')).toEqual({ unknown: 'compress' })
  })

  it('round-trips every coding', async () => {
    const data = Buffer.from('a NAR is mostly ELF and text\n'.repeat(10_000))
    for (const coding of CODINGS) {
      const packed: Buffer[] = []
      const c = compressor(coding)
      c.on('data', (b: Buffer) => packed.push(b))
      await new Promise(resolve => { c.on('end', resolve); c.end(data) })
      const out: Buffer[] = []
      const d = decompressor(coding)
      d.on('data', (b: Buffer) => out.push(b))
      await new Promise(resolve => { d.on('end', resolve); d.end(Buffer.concat(packed)) })
      expect(Buffer.concat(packed).length, coding).toBeLessThan(data.length / 10)
      expect(Buffer.compare(Buffer.concat(out), data), coding).toBe(0)
    }
  })
})
