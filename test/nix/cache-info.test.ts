import { describe, expect, it } from 'vitest'
import { formatCacheInfo, parseCacheInfo } from '../../src/nix/cache-info.js'
import { NarInfoParseError } from '../../src/errors.js'
import { fixtureText } from './fixtures.js'

describe('parseCacheInfo / formatCacheInfo', () => {
  it('reads the nix-cache-info of a file:// cache written by nix copy', () => {
    const text = fixtureText('binary-cache/nix-cache-info')
    expect(text).toBe('StoreDir: /nix/store\n')
    expect(parseCacheInfo(text)).toEqual({ storeDir: '/nix/store', wantMassQuery: false, extra: {} })
  })

  it('round-trips cache.nixos.org\'s nix-cache-info', () => {
    const text = 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n'
    const info = parseCacheInfo(text)
    expect(info).toEqual({ storeDir: '/nix/store', wantMassQuery: true, priority: 40, extra: {} })
    expect(formatCacheInfo(info)).toBe(text)
  })

  it('keeps fields Nix ignores, such as the CID recipe', () => {
    const text = 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\nX-CID-Recipe: cdc-v1\n'
    const info = parseCacheInfo(text)
    expect(info.extra).toEqual({ 'X-CID-Recipe': 'cdc-v1' })
    expect(formatCacheInfo(info)).toBe(text)
  })

  it('writes WantMassQuery: 0 and leaves out a missing Priority', () => {
    expect(formatCacheInfo({ storeDir: '/nix/store', wantMassQuery: false, extra: {} })).toBe('StoreDir: /nix/store\nWantMassQuery: 0\n')
  })

  it.each([
    ['no StoreDir', 'WantMassQuery: 1\n', /^line 1: invalid StoreDir \(missing\)$/],
    ['an empty text', '', /invalid StoreDir \(missing\)/],
    ['a line without a colon', 'StoreDir: /nix/store\nbogus\n', /^line 2: invalid line/],
    ['a bad Priority', 'StoreDir: /nix/store\nPriority: high\n', /^line 2: invalid Priority/],
    ['a negative Priority', 'StoreDir: /nix/store\nPriority: -1\n', /^line 2: invalid Priority/]
  ])('rejects %s', (_, text, message) => {
    expect(() => parseCacheInfo(text)).toThrow(NarInfoParseError)
    expect(() => parseCacheInfo(text)).toThrow(message)
  })
})
