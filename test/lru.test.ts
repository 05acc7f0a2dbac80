import { describe, expect, it } from 'vitest'
import { Lru } from '../src/lru.js'

describe('Lru', () => {
  it('keeps at most `max` entries, forgetting the least recently used', () => {
    const lru = new Lru<number>(3)
    for (let i = 0; i < 1000; i++) lru.set(`k${i}`, i)
    expect([lru.get('k996'), lru.get('k997'), lru.get('k998'), lru.get('k999')]).toEqual([undefined, 997, 998, 999])
    lru.get('k997') // now the most recent
    lru.set('new', -1)
    expect(lru.get('k998')).toBeUndefined()
    expect(lru.get('k997')).toBe(997)
    lru.delete('k997')
    expect(lru.get('k997')).toBeUndefined()
  })
})
