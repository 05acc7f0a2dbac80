import { HttpError } from './http-errors.js'
import type { RouteContext } from './routes.js'

const ID = /^sha256:[0-9a-f]{64}![A-Za-z0-9+\-._?=]+$/

/** `GET|HEAD /realisations/<id>.doi`: which store path a CA derivation output is (Nix asks with ca-derivations on). */
export async function serveRealisation ({ res, params, index, head }: RouteContext): Promise<void> {
  let id: string
  try { id = decodeURIComponent(params[0]!) } catch { throw new HttpError('ERR_BAD_REQUEST', 'malformed realisation id') }
  if (!ID.test(id)) throw new HttpError('ERR_NOT_FOUND', `${id} is not a realisation id`)
  const text = await index?.realisation(id)
  if (text === undefined) throw new HttpError('ERR_NOT_FOUND', `no realisation ${id}`)
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(head ? undefined : text)
}
