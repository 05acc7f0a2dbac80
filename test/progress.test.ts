import { describe, expect, it } from 'vitest'
import { formatBytes } from '../src/progress.js'

describe('formatBytes', () => {
  it('gives bytes in binary units, whole bytes below a KiB (a rate of 849.9 B/s was printed with all its digits)', () => {
    expect(formatBytes(0)).toBe('0 B')
    expect(formatBytes(849.9178981937603)).toBe('850 B')
    expect(formatBytes(1536)).toBe('1.5 KiB')
    expect(formatBytes(3.8 * 2 ** 20)).toBe('3.8 MiB')
    expect(formatBytes(1.2 * 2 ** 30)).toBe('1.2 GiB')
  })
})
