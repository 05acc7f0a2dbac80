import type { Batch, Datastore, Key, KeyQuery, Pair, Query } from 'interface-datastore'

/** Where libp2p's peer store keeps its peers (addresses, protocols, keys): one entry a peer. */
const PEERS_PREFIX = '/peers/'

/** The error a datastore throws for a missing key: libp2p checks its name. */
class NotFoundError extends Error {
  override name = 'NotFoundError'
  readonly code = 'ERR_NOT_FOUND'
}

const isPeerKey = (key: Key): boolean => key.toString().startsWith(PEERS_PREFIX)

/** What `query` asks of a list of entries: prefix, filters, orders, offset and limit, in that order. */
function select<T> (items: T[], keyOf: (item: T) => string, q: { prefix?: string, filters?: Array<(item: T) => boolean>, orders?: Array<(a: T, b: T) => number>, offset?: number, limit?: number }): T[] {
  let out = items.filter(item => keyOf(item).startsWith(q.prefix ?? ''))
  for (const f of q.filters ?? []) out = out.filter(f)
  for (const o of q.orders ?? []) out = out.sort(o)
  return out.slice(q.offset ?? 0, q.limit === undefined ? undefined : (q.offset ?? 0) + q.limit)
}

/** True when a query with this prefix may match a peer entry (no prefix, '/', or one under /peers/). */
const mayHoldPeers = (prefix = ''): boolean => PEERS_PREFIX.startsWith(prefix) || prefix.startsWith(PEERS_PREFIX)
/** True when a query with this prefix may match an entry that is not a peer. */
const mayHoldOthers = (prefix = ''): boolean => !prefix.startsWith(PEERS_PREFIX)

/**
 * `datastore` with libp2p's peer store (keys under /peers/) kept in memory:
 * it is a cache of what peers said about themselves, rewritten at every
 * identify and DHT answer, which on disk cost a file write each (a quarter
 * of the CPU of a loopback network of DHT nodes). kubo keeps its peerstore in
 * memory too; the bootstrap peers find the rest again after a restart. DHT
 * records and provider records stay in `datastore`.
 */
export function withPeersInMemory (datastore: Datastore): Datastore {
  const peers = new Map<string, Pair>()
  const get = async (key: Key): Promise<Uint8Array> => {
    if (!isPeerKey(key)) return await datastore.get(key)
    const pair = peers.get(key.toString())
    if (pair === undefined) throw new NotFoundError(`no peer entry ${key.toString()}`)
    return pair.value
  }
  const put = async (key: Key, value: Uint8Array): Promise<Key> => {
    if (!isPeerKey(key)) return await datastore.put(key, value)
    peers.set(key.toString(), { key, value })
    return key
  }
  const del = async (key: Key): Promise<void> => {
    if (isPeerKey(key)) peers.delete(key.toString())
    else await datastore.delete(key)
  }
  return {
    get,
    put,
    delete: del,
    has: async (key) => isPeerKey(key) ? peers.has(key.toString()) : await datastore.has(key),
    putMany: async function * (source) { for await (const { key, value } of source) yield await put(key, value) },
    getMany: async function * (source) { for await (const key of source) yield { key, value: await get(key) } },
    deleteMany: async function * (source) { for await (const key of source) { await del(key); yield key } },
    batch: (): Batch => {
      const inner = datastore.batch()
      const puts: Pair[] = []
      const deletes: Key[] = []
      return {
        put: (key, value) => { if (isPeerKey(key)) puts.push({ key, value }); else inner.put(key, value) },
        delete: (key) => { if (isPeerKey(key)) deletes.push(key); else inner.delete(key) },
        commit: async (options) => {
          for (const { key, value } of puts) peers.set(key.toString(), { key, value })
          for (const key of deletes) peers.delete(key.toString())
          await inner.commit(options)
        }
      }
    },
    // A query that spans both (no prefix) gets the stored entries, then the peers.
    query: async function * (q: Query, options) {
      if (mayHoldOthers(q.prefix)) yield * datastore.query(q, options)
      if (mayHoldPeers(q.prefix)) yield * select([...peers.values()], p => p.key.toString(), q)
    },
    queryKeys: async function * (q: KeyQuery, options) {
      if (mayHoldOthers(q.prefix)) yield * datastore.queryKeys(q, options)
      if (mayHoldPeers(q.prefix)) yield * select([...peers.values()].map(p => p.key), k => k.toString(), q)
    }
  }
}
