import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { resolve } from 'node:path'
import { Ajv, type ValidateFunction } from 'ajv'
import addFormatsModule from 'ajv-formats'

// Checks Pinning Service API traffic against the spec's own OpenAPI document
// (test/fixtures/pinning/, see its README): responses by path, method and
// status; requests by their body, query parameters and bearer token.

const SPEC_FILE = resolve(import.meta.dirname, '../fixtures/pinning/ipfs-pinning-service.json')

interface Operation {
  parameters?: Array<{ $ref?: string }>
  requestBody?: { content: Record<string, { schema: { $ref: string } }> }
  responses: Record<string, { $ref?: string, content?: Record<string, { schema: { $ref: string } }> } | null>
}

type Doc = { paths: Record<string, Record<string, Operation | unknown>>, components: { parameters: Record<string, { name: string, schema?: unknown, content?: Record<string, { schema: unknown }> }>, responses: Record<string, { content?: Record<string, { schema: { $ref: string } }> }> } }

export const spec = JSON.parse(readFileSync(SPEC_FILE, 'utf8')) as Doc

// ajv-formats is CommonJS; its default export is the function under ESM interop.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv) => void
// The spec's schemas carry OpenAPI's `example` keyword, which is no JSON Schema keyword: not strict.
const ajv = new Ajv({ strict: false, allErrors: true })
addFormats(ajv)
ajv.addSchema(spec as object, 'psa')

const validators = new Map<string, ValidateFunction>()
function validatorOf (ref: string): ValidateFunction {
  let v = validators.get(ref)
  if (v === undefined) {
    v = ajv.getSchema(`psa${ref}`)
    if (v === undefined) throw new Error(`no schema ${ref} in the spec`)
    validators.set(ref, v)
  }
  return v
}

const errorsOf = (v: ValidateFunction): string => ajv.errorsText(v.errors)

/** The spec path template and operation of a request under the endpoint (`/pins`, `/pins/{requestid}`). */
function operationOf (method: string, path: string): { template: string, op: Operation } | string {
  const template = /^\/pins\/?$/.test(path) ? '/pins' : /^\/pins\/[^/]+$/.test(path) ? '/pins/{requestid}' : undefined
  if (template === undefined) return `${path} is no path of the spec`
  const op = spec.paths[template]![method.toLowerCase()] as Operation | undefined
  if (op === undefined) return `${method} ${template} is no operation of the spec`
  return { template, op }
}

/** What is wrong with a request under the endpoint (path relative to it), against the spec; empty when nothing. */
export function checkRequest (method: string, pathAndQuery: string, headers: Record<string, string | string[] | undefined>, body: string): string[] {
  const url = new URL(pathAndQuery, 'http://x')
  const found = operationOf(method, url.pathname)
  if (typeof found === 'string') return [found]
  const problems: string[] = []
  if (!/^Bearer \S+$/.test(String(headers.authorization ?? ''))) problems.push('no "Authorization: Bearer <token>" (the spec\'s accessToken security)')
  const known = new Map<string, { schema?: unknown, content?: Record<string, { schema: unknown }> }>()
  for (const p of found.op.parameters ?? []) {
    const param = spec.components.parameters[p.$ref!.split('/').at(-1)!]!
    known.set(param.name, param)
  }
  for (const [key, raw] of url.searchParams) {
    const param = known.get(key)
    if (param === undefined) { problems.push(`query parameter ${key} is not in the spec`); continue }
    let value: unknown = raw
    const schema = (param.schema ?? param.content!['application/json']!.schema) as { type?: string }
    if (param.content !== undefined) {
      try { value = JSON.parse(raw) } catch { problems.push(`${key} is not JSON`); continue }
    } else if (schema.type === 'array') value = raw.split(',')
    else if (schema.type === 'integer') value = Number(raw)
    const v = ajv.compile({ ...(schema as object), components: spec.components })
    if (!v(value)) problems.push(`query ${key}=${raw}: ${errorsOf(v)}`)
  }
  if (found.op.requestBody !== undefined) {
    const ref = found.op.requestBody.content['application/json']!.schema.$ref
    let value: unknown
    try { value = JSON.parse(body) } catch { return [...problems, `the body is not JSON: ${body.slice(0, 80)}`] }
    const v = validatorOf(ref)
    if (!v(value)) problems.push(`body: ${errorsOf(v)}`)
  } else if (body !== '') problems.push(`${method} ${found.template} takes no body`)
  return problems
}

/** What is wrong with a response to `method path` against the spec; empty when nothing. */
export function checkResponse (method: string, pathAndQuery: string, status: number, contentType: string | undefined, body: string): string[] {
  const found = operationOf(method, new URL(pathAndQuery, 'http://x').pathname)
  if (typeof found === 'string') return [found]
  const response = found.op.responses[String(status)] ?? found.op.responses[`${String(status)[0]}XX`]
  if (response === undefined) return [`${method} ${found.template}: status ${status} is not in the spec`]
  const content = response?.$ref !== undefined ? spec.components.responses[response.$ref.split('/').at(-1)!]!.content : response?.content
  if (content === undefined) return body === '' ? [] : [`${method} ${found.template} ${status} has no body in the spec, got ${body.slice(0, 80)}`]
  if (!/^application\/json\b/.test(contentType ?? '')) return [`${method} ${found.template} ${status}: content-type ${contentType ?? 'none'}, the spec says application/json`]
  let value: unknown
  try { value = JSON.parse(body) } catch { return [`${method} ${found.template} ${status}: not JSON: ${body.slice(0, 80)}`] }
  const v = validatorOf(content['application/json']!.schema.$ref)
  return v(value) ? [] : [`${method} ${found.template} ${status}: ${errorsOf(v)}`]
}

/** A proxy in front of a Pinning Service API endpoint that checks every request and response passing through against the spec. */
export interface SpecProxy {
  /** the proxy's endpoint: the target endpoint's path on the proxy's host */
  url: string
  /** every exchange, as `METHOD path status` */
  exchanges: string[]
  /** every way a request or response broke the spec */
  problems: string[]
  close: () => Promise<void>
}

/** Starts a checking proxy for the endpoint `target` (e.g. http://127.0.0.1:8080/psa). */
export async function specProxy (target: string): Promise<SpecProxy> {
  const base = new URL(target)
  const prefix = base.pathname.replace(/\/+$/, '')
  const exchanges: string[] = []
  const problems: string[] = []
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = []
    req.on('data', (c: Buffer) => parts.push(c))
    req.on('end', () => {
      const body = Buffer.concat(parts).toString('utf8')
      const method = req.method ?? 'GET'
      const path = (req.url ?? '/').slice(prefix.length)
      problems.push(...checkRequest(method, path, req.headers, body).map(p => `request ${method} ${path}: ${p}`))
      fetch(new URL(req.url ?? '/', base), {
        method,
        headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => ['authorization', 'content-type', 'accept'].includes(k)) as Array<[string, string]>),
        body: body === '' ? undefined : body
      }).then(async r => {
        const text = await r.text()
        exchanges.push(`${method} ${path} ${r.status}`)
        problems.push(...checkResponse(method, path, r.status, r.headers.get('content-type') ?? undefined, text).map(p => `response ${method} ${path}: ${p}`))
        res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'text/plain' })
        res.end(text)
      }, (err: Error) => { res.writeHead(502); res.end(err.message) })
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}${prefix}`,
    exchanges,
    problems,
    close: async () => { server.closeAllConnections(); await new Promise(resolve => server.close(resolve)) }
  }
}
