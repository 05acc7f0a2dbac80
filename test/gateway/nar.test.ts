import { describe, expect, it } from 'vitest'
import { HttpError } from '../../src/gateway/http-errors.js'
import { parseRange } from '../../src/gateway/nar.js'
import { parseListen } from '../../src/commands/network-args.js'

describe('parseRange', () => {
  const cases: Array<[string | undefined, { start: number, end: number } | undefined]> = [
    [undefined, undefined],
    ['bytes=0-99', { start: 0, end: 99 }],
    ['bytes=100-', { start: 100, end: 999 }],
    ['bytes=-100', { start: 900, end: 999 }],
    ['bytes=-5000', { start: 0, end: 999 }],
    ['bytes=990-5000', { start: 990, end: 999 }],
    ['bytes=0-1,5-6', undefined], // several ranges: the whole NAR is served
    ['items=0-1', undefined],
    ['bytes=-', undefined],
    ['bytes=5-2', undefined] // invalid (last before first): ignored, as RFC 9110 §14.2 says
  ]
  for (const [header, want] of cases) {
    it(`reads ${String(header)}`, () => { expect(parseRange(header, 1000)).toEqual(want) })
  }
  it('refuses ranges outside the NAR with a 416', () => {
    for (const h of ['bytes=1000-', 'bytes=1000-1200', 'bytes=-0']) {
      const err = (() => { try { parseRange(h, 1000) } catch (e) { return e } })()
      expect(err).toBeInstanceOf(HttpError)
      expect((err as HttpError).code).toBe('ERR_RANGE')
    }
  })
})

describe('parseListen', () => {
  it('reads host:port, [v6]:port and :port', () => {
    expect(parseListen('127.0.0.1:8080')).toEqual({ host: '127.0.0.1', port: 8080 })
    expect(parseListen('[::1]:0')).toEqual({ host: '::1', port: 0 })
    expect(parseListen(':9000')).toEqual({ host: '127.0.0.1', port: 9000 })
    expect(() => parseListen('8080')).toThrow(/HOST:PORT/)
    expect(() => parseListen('h:70000')).toThrow(/HOST:PORT/)
  })
})
