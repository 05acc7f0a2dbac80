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

  it('keeps at most `maxWeight` in total when entries are weighed, forgetting the least recently used', () => {
    const lru = new Lru<string>(1000, v => v.length, 10)
    for (const k of ['a', 'b', 'c', 'd']) lru.set(k, k.repeat(4))
    expect(['a', 'b', 'c', 'd'].map(k => lru.get(k))).toEqual([undefined, undefined, 'cccc', 'dddd'])
    lru.set('c', 'c') // replacing an entry frees its old weight
    lru.set('e', 'eeeee')
    expect(['c', 'd', 'e'].map(k => lru.get(k))).toEqual(['c', 'dddd', 'eeeee'])
    lru.set('big', 'x'.repeat(50)) // heavier than the budget alone: kept, everything else goes
    expect(['c', 'd', 'e', 'big'].map(k => lru.get(k)?.length)).toEqual([undefined, undefined, undefined, 50])
  })
})
