import { createHash } from 'node:crypto'
import { Worker } from 'node:worker_threads'

/** Below this size hashing inline is cheaper than a round trip to the worker. */
const INLINE_BYTES = 64 * 1024

// The worker hashes each buffer it is handed and hands it back (transferred both ways, never copied).
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
parentPort.on('message', ({ id, buf }) => {
  const digest = createHash('sha256').update(new Uint8Array(buf)).digest()
  parentPort.postMessage({ id, buf, digest }, [buf])
})
`

interface Job { resolve: (r: { bytes: Uint8Array, digest: Uint8Array }) => void, reject: (e: Error) => void }

let worker: Worker | undefined
let nextId = 0
const jobs = new Map<number, Job>()

function getWorker (): Worker {
  if (worker !== undefined) return worker
  const w = new Worker(WORKER_SOURCE, { eval: true })
  w.on('message', ({ id, buf, digest }: { id: number, buf: ArrayBuffer, digest: Uint8Array }) => {
    const job = jobs.get(id)
    jobs.delete(id)
    if (jobs.size === 0) w.unref()
    job?.resolve({ bytes: new Uint8Array(buf), digest })
  })
  w.unref() // after the listener, which refs it again: an idle worker never keeps the process alive
  w.on('error', err => {
    for (const job of jobs.values()) job.reject(err)
    jobs.clear()
    worker = undefined
  })
  worker = w
  return w
}

/**
 * SHA-256 of `bytes` on a worker thread, so hashing runs beside the main
 * thread's I/O. Returns the bytes (which may be a new view: the original
 * buffer is transferred) with their digest.
 */
export async function sha256Off (bytes: Uint8Array): Promise<{ bytes: Uint8Array, digest: Uint8Array }> {
  // Only a buffer that owns its whole ArrayBuffer can be transferred; anything else is hashed here.
  if (bytes.length < INLINE_BYTES || bytes.byteOffset !== 0 || bytes.byteLength !== bytes.buffer.byteLength || !(bytes.buffer instanceof ArrayBuffer)) {
    return { bytes, digest: createHash('sha256').update(bytes).digest() }
  }
  const w = getWorker()
  const id = nextId++
  return await new Promise((resolve, reject) => {
    jobs.set(id, { resolve, reject })
    w.ref() // a job in flight keeps the process alive until it is answered
    w.postMessage({ id, buf: bytes.buffer }, [bytes.buffer as ArrayBuffer])
  })
}
