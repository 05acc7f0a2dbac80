import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { UpstreamError } from '../../src/errors.js'
import { decompress } from '../../src/upstream/decompress.js'

/** The decompressed bytes of `bytes`, as one string. */
async function read (compression: string, bytes: Uint8Array): Promise<string> {
  let out = ''
  for await (const chunk of decompress(compression, (async function * () { yield bytes })())) out += Buffer.from(chunk).toString()
  return out
}

describe('decompressing an upstream NAR', () => {
  it('a corrupt or cut bzip2 NAR is an UpstreamError for its reader, not an unhandled error that ends the process', async () => {
    const text = Array.from({ length: 20_000 }, (_, i) => `entry ${i}\n`).join('')
    const good = execFileSync('bzip2', ['-c'], { input: text })
    expect(await read('bzip2', good)).toBe(text)
    const flipped = Buffer.from(good)
    flipped[60]! ^= 0xff
    for (const bad of [flipped, good.subarray(0, good.length - 20), Buffer.from('not bzip2')]) {
      await expect(read('bzip2', bad)).rejects.toThrow(UpstreamError)
    }
    await expect(read('bzip2', Buffer.from('not bzip2'))).rejects.toThrow(/^the bzip2-compressed NAR does not decompress: No magic number found$/)
  }, 10_000)
})
