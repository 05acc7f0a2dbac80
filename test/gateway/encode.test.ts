import { randomBytes } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { describe, expect, it } from 'vitest'
import { CODINGS } from '../../src/codings.js'
import { codingOfExtension, compressedIfPays, fromLoopback, narCodingFor, NAR_EXTENSIONS } from '../../src/gateway/encode.js'

const from = (remoteAddress: string): IncomingMessage => ({ socket: { remoteAddress } }) as unknown as IncomingMessage

describe('gateway encoding choices', () => {
  it('tells loopback clients (IPv4, IPv6, mapped) from others', () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) expect(fromLoopback(from(a)), a).toBe(true)
    for (const a of ['192.0.2.2', '10.0.0.1', '::ffff:10.0.0.1', 'fe80::1', '']) expect(fromLoopback(from(a)), a).toBe(false)
  })

  it('--compress-nar: auto compresses for other hosts only; none never; a coding always', () => {
    expect(narCodingFor('auto', from('127.0.0.1'))).toBeUndefined()
    expect(narCodingFor('auto', from('192.0.2.2'))).toBe(CODINGS[0])
    expect(narCodingFor('none', from('192.0.2.2'))).toBeUndefined()
    expect(narCodingFor('gzip', from('127.0.0.1'))).toBe('gzip')
  })

  it('names compressed NARs as Nix caches do, and knows only codings this Node writes', () => {
    expect(NAR_EXTENSIONS).toEqual({ zstd: 'zst', br: 'br', gzip: 'gz' })
    expect(codingOfExtension('br')).toBe('br')
    expect(codingOfExtension('zst')).toBe(CODINGS.includes('zstd') ? 'zstd' : undefined)
    expect(codingOfExtension('xz')).toBeUndefined()
  })

  it('compresses a block only when it shrinks at least 1.1×', async () => {
    expect(await compressedIfPays('br', randomBytes(256 * 1024))).toBeUndefined()
    expect(await compressedIfPays('br', new Uint8Array(0))).toBeUndefined()
    const text = Buffer.from('text compresses\n'.repeat(10_000))
    expect((await compressedIfPays('br', text))!.length).toBeLessThan(text.length / 10)
  })
})
