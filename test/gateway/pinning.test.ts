import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RemotePinStore } from '../../src/cache/remote-pins.js'
import { startGateway, type Gateway } from '../../src/gateway/server.js'
import { cidOf, RAW_CODE } from '../../src/ipfs/block.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { tmp } from '../helpers/cli.js'
import { checkRequest, checkResponse } from '../helpers/pinning-spec.js'

// The Pinning Service API as a gateway serves it at /psa, every request and
// answer checked against the spec's OpenAPI document (test/fixtures/pinning).

const TOKEN = 'tok-' + randomBytes(8).toString('hex')
const DELEGATE = '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDwEVQ6Bjf6LUwNkL25qPuVVEb2zVSd8CMhQSPg6mjb4Y'
const someCid = (): string => cidOf(RAW_CODE, randomBytes(8)).toString()

interface Answer { status: number, body: any, text: string, headers: Headers }

describe('the Pinning Service API at /psa', () => {
  let store: PackStore
  let gw: Gateway
  let off: Gateway
  let pins: RemotePinStore
  let changed = 0

  beforeAll(async () => {
    const repo = tmp()
    store = await PackStore.openRepo(repo)
    pins = await RemotePinStore.open(repo)
    const base = { caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: store, local: store, record: async () => undefined, host: '127.0.0.1', port: 0 }
    gw = await startGateway({ ...base, pinning: { store: pins, tokens: ['other-token', TOKEN], delegates: () => [DELEGATE], changed: () => { changed++ } } })
    off = await startGateway(base)
  })
  afterAll(async () => { await gw.close(); await off.close(); await store.close() })

  /** A request to the API; a well-formed one (`valid`) is checked against the spec, every answer is. */
  async function call (method: string, path: string, options: { body?: string, token?: string | null, valid?: boolean, url?: string } = {}): Promise<Answer> {
    const token = options.token === undefined ? TOKEN : options.token
    const headers: Record<string, string> = { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...(options.body === undefined ? {} : { 'content-type': 'application/json' }) }
    if (options.valid !== false) expect(checkRequest(method, path, headers, options.body ?? '')).toEqual([])
    const res = await fetch(`${options.url ?? gw.url}/psa${path}`, { method, headers, body: options.body })
    const text = await res.text()
    expect(checkResponse(method, path, res.status, res.headers.get('content-type') ?? undefined, text), `${method} ${path} → ${res.status} ${text}`).toEqual([])
    return { status: res.status, text, body: text === '' ? undefined : JSON.parse(text), headers: res.headers }
  }

  it('is off without tokens: a 501 in the spec\'s error shape saying how to turn it on', async () => {
    const r = await call('GET', '/pins', { url: off.url })
    expect(r.status).toBe(501)
    expect(r.body.error).toMatchObject({ reason: 'NOT_IMPLEMENTED', details: expect.stringMatching(/--pin-token-file/) })
  })

  it('refuses a missing or wrong token with 401 and the spec\'s error JSON', async () => {
    for (const token of [null, 'wrong', TOKEN + 'x']) {
      const r = await call('GET', '/pins', { token, valid: token !== null })
      expect(r.status).toBe(401)
      expect(r.body).toEqual({ error: { reason: 'UNAUTHORIZED', details: expect.any(String) } })
      expect(r.headers.get('www-authenticate')).toBe('Bearer')
    }
    expect((await call('GET', '/pins', { token: 'other-token' })).status).toBe(200)
  })

  it('adds, lists, gets, replaces and deletes pin requests as the spec says', async () => {
    const before = changed
    const cid = someCid()
    const added = await call('POST', '/pins', { body: JSON.stringify({ cid, name: 'nixipfs test', origins: [DELEGATE], meta: { app: 'test' } }) })
    expect(added.status).toBe(202)
    expect(added.body).toMatchObject({ status: 'queued', pin: { cid, name: 'nixipfs test', origins: [DELEGATE], meta: { app: 'test' } }, delegates: [DELEGATE] })
    expect(changed).toBe(before + 1)
    const id = added.body.requestid as string

    // A listing shows pinned requests unless told otherwise.
    expect((await call('GET', '/pins')).body).toEqual({ count: 0, results: [] })
    const queued = await call('GET', `/pins?status=queued,pinning&cid=${cid}&name=nixipfs&match=partial&limit=5&meta=${encodeURIComponent('{"app":"test"}')}`)
    expect(queued.body).toMatchObject({ count: 1, results: [{ requestid: id }] })
    await pins.setStatus(id, 'pinned', 'done')
    expect((await call('GET', `/pins/${id}`)).body).toMatchObject({ requestid: id, status: 'pinned', info: { status_details: 'done' } })
    expect((await call('GET', `/pins?after=${encodeURIComponent(new Date(Date.now() - 60_000).toISOString())}`)).body.count).toBe(1)

    const other = someCid()
    const replaced = await call('POST', `/pins/${id}`, { body: JSON.stringify({ cid: other }) })
    expect(replaced.status).toBe(202)
    expect(replaced.body.requestid).not.toBe(id)
    expect(replaced.body.pin).toEqual({ cid: other })
    expect((await call('GET', `/pins/${id}`)).status).toBe(404)
    expect((await call('POST', `/pins/${id}`, { body: JSON.stringify({ cid: other }) })).status).toBe(404)

    const deleted = await call('DELETE', `/pins/${replaced.body.requestid as string}`)
    expect(deleted.status).toBe(202)
    expect(deleted.text).toBe('')
    const gone = await call('DELETE', `/pins/${replaced.body.requestid as string}`)
    expect(gone.status).toBe(404)
    expect(gone.body.error.reason).toBe('NOT_FOUND')
  })

  it('answers hostile bodies and queries with 400 in the spec\'s error shape', async () => {
    const count = pins.all().length
    const bodies = [
      '{"cid":', 'null', '[]', '"bafy"', '{}', '{"cid": 5}', '{"cid": "not-a-cid"}', '{"cid": "Qm!!"}',
      JSON.stringify({ cid: someCid(), name: 'x'.repeat(256) }),
      JSON.stringify({ cid: someCid(), origins: ['not a multiaddr'] }),
      JSON.stringify({ cid: someCid(), origins: Array.from({ length: 21 }, (_, i) => `/ip4/127.0.0.1/tcp/${i + 1}`) }),
      JSON.stringify({ cid: someCid(), origins: [DELEGATE, DELEGATE] }),
      JSON.stringify({ cid: someCid(), meta: { a: 1 } }),
      JSON.stringify({ cid: someCid(), meta: 'x' }),
      '\xff\xfe{"cid": 1}'
    ]
    for (const body of bodies) {
      const r = await call('POST', '/pins', { body, valid: false })
      expect(r.status, body).toBe(400)
      expect(r.body.error.reason).toBe('BAD_REQUEST')
    }
    for (const query of ['limit=0', 'limit=1001', 'limit=x', 'status=bogus', 'status=', 'cid=nope', `cid=${Array.from({ length: 11 }, someCid).join(',')}`, 'before=yesterday', 'match=fuzzy', 'meta=%7B', 'meta=%7B%22a%22%3A1%7D', `name=${'n'.repeat(256)}`]) {
      const r = await call('GET', `/pins?${query}`, { valid: false })
      expect(r.status, query).toBe(400)
      expect(r.body.error.reason).toBe('BAD_REQUEST')
    }
    expect(pins.all().length).toBe(count)
  })

  it('cuts a huge body off at the limit with a 400, and still answers on', async () => {
    const { port } = new URL(gw.url)
    const huge = Buffer.alloc(4 * 2 ** 20, 'a')
    const answer = await new Promise<{ status: number, text: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/psa/pins', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'content-length': huge.length } }, res => {
        let text = ''
        res.on('data', (c: Buffer) => { text += c.toString() })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      })
      req.on('error', reject)
      req.end(huge)
    })
    expect(answer.status).toBe(400)
    expect(checkResponse('POST', '/pins', 400, 'application/json', answer.text)).toEqual([])
    expect(JSON.parse(answer.text).error.details).toMatch(/65536 bytes/)
    expect((await call('GET', '/pins')).status).toBe(200)
  })

  it('answers an unknown path or method under /psa in the spec\'s error shape', async () => {
    const r = await fetch(`${gw.url}/psa/nothing`, { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(r.status).toBe(404)
    expect(((await r.json()) as any).error.reason).toBe('NOT_FOUND')
    const raw = await fetch(`${gw.url}/psa/pins`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}` } })
    expect(raw.status).toBe(405)
    expect(((await raw.json()) as any).error.reason).toBe('METHOD_NOT_ALLOWED')
  })
})

describe('the spec checker (test/helpers/pinning-spec.ts)', () => {
  // A checker that passes everything would make the checks above worthless.
  const status = { requestid: 'r', status: 'pinned', created: '2026-01-01T00:00:00.000Z', pin: { cid: 'bafy' }, delegates: [DELEGATE] }
  it('refuses responses and requests that break the spec', () => {
    expect(checkResponse('GET', '/pins/r', 200, 'application/json', JSON.stringify(status))).toEqual([])
    expect(checkResponse('GET', '/pins/r', 200, 'application/json', JSON.stringify({ ...status, delegates: [] }))).not.toEqual([])
    expect(checkResponse('GET', '/pins/r', 200, 'application/json', JSON.stringify({ ...status, status: 'done' }))).not.toEqual([])
    expect(checkResponse('GET', '/pins/r', 200, 'application/json', JSON.stringify({ ...status, created: 'yesterday' }))).not.toEqual([])
    expect(checkResponse('GET', '/pins', 200, 'application/json', JSON.stringify({ results: [] }))).not.toEqual([])
    expect(checkResponse('GET', '/pins', 400, 'application/json', JSON.stringify({ error: 'bad' }))).not.toEqual([])
    expect(checkResponse('GET', '/pins', 400, 'text/plain', JSON.stringify({ error: { reason: 'BAD_REQUEST' } }))).not.toEqual([])
    expect(checkResponse('DELETE', '/pins/r', 202, undefined, 'ok')).not.toEqual([])
    expect(checkResponse('PUT', '/pins', 405, 'application/json', '{}')).not.toEqual([])
    const auth = { authorization: 'Bearer t' }
    expect(checkRequest('GET', '/pins?status=pinned,queued&limit=10', auth, '')).toEqual([])
    expect(checkRequest('GET', '/pins?status=done', auth, '')).not.toEqual([])
    expect(checkRequest('GET', '/pins?limit=0', auth, '')).not.toEqual([])
    expect(checkRequest('GET', '/pins?bogus=1', auth, '')).not.toEqual([])
    expect(checkRequest('GET', '/pins', {}, '')).not.toEqual([])
    expect(checkRequest('POST', '/pins', auth, '{"name": "no cid"}')).not.toEqual([])
    expect(checkRequest('POST', '/pins', auth, JSON.stringify({ cid: 'x', origins: [DELEGATE, DELEGATE] }))).not.toEqual([])
  })
})
