// unbzip2-stream ships no types: a transform from bzip2 to plain bytes.
declare module 'unbzip2-stream' {
  import type { Duplex } from 'node:stream'
  export default function bunzip2 (): Duplex
}
