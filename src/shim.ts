/**
 * Node 20 lacks `Promise.withResolvers` (added in Node 22); libp2p, it-queue
 * and mortice call it, and `helia.stop()` crashes without it. Imported first
 * by every entry point; a no-op on current Node.
 */
if (typeof (Promise as { withResolvers?: unknown }).withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T> () {
      let resolve!: (value: T | PromiseLike<T>) => void
      let reject!: (reason?: unknown) => void
      const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}
export {}
