/**
 * A NAR as a stream of events, in the order the archive stores them. The
 * filesystem walker and the parser produce it; the encoder consumes it.
 * `name` is the entry name inside the parent directory (absent for the root).
 */
export type NarEvent =
  | { type: 'directory', name?: Uint8Array }
  | { type: 'end' }
  | { type: 'file', name?: Uint8Array, executable: boolean, size: number, contents: AsyncIterable<Uint8Array> }
  | { type: 'symlink', name?: Uint8Array, target: Uint8Array }
