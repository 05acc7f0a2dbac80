// CPU-heavy synchronous work (compressing a frame or a block takes milliseconds)
// done for many responses at once must not hold the event loop for all of
// them in a row: two hundred clients that asked for zstd and never read held a
// narinfo request for 10 s. Such work takes turns here, one job per turn of
// the event loop, first come first served; I/O (other requests) is handled
// between any two jobs.

const queue: Array<() => void> = []
let scheduled = false

function runOne (): void {
  const job = queue.shift()
  if (queue.length > 0) setImmediate(runOne)
  else scheduled = false
  job?.()
}

/** `work()` run in its turn: alone in a turn of the event loop, after the work queued before it. */
export async function inTurn<T> (work: () => T): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    queue.push(() => { try { resolve(work()) } catch (err) { reject(err) } })
    if (!scheduled) { scheduled = true; setImmediate(runOne) }
  })
}
