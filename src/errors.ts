import { formatBytes } from './progress.js'

/** Base class of every error nixipfs raises on purpose: `code` is stable, `message` says what to do. */
export class NixipfsError extends Error {
  readonly code: string
  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

/** A Nix base32 string or a hash in any of Nix's notations is malformed. */
export class InvalidHashError extends NixipfsError {
  override name = 'InvalidHashError'
  constructor (message: string) { super('ERR_INVALID_HASH', message) }
}

/** A store path or store path base name is malformed. */
export class InvalidStorePathError extends NixipfsError {
  override name = 'InvalidStorePathError'
  constructor (message: string) { super('ERR_INVALID_STORE_PATH', message) }
}

/** A NAR stream violates the format (bad magic, unsorted entries, bad names, truncation). */
export class NarFormatError extends NixipfsError {
  override name = 'NarFormatError'
  constructor (message: string, readonly offset?: number) {
    super('ERR_NAR_FORMAT', offset === undefined ? message : `${message} (at byte ${offset})`)
  }
}

/** A CAR stream violates CARv1 (bad varint, bad header, oversized or truncated section); the message gives the byte offset. */
export class CarFormatError extends NixipfsError {
  override name = 'CarFormatError'
  constructor (message: string, readonly offset: number) {
    super('ERR_CAR_FORMAT', `${message} (at byte ${offset})`)
  }
}

/** A store path asked for is not in the cache (as the cache's own narinfos say). */
export class NotInCacheError extends NixipfsError {
  override name = 'NotInCacheError'
  constructor (message: string) { super('ERR_NOT_IN_CACHE', message) }
}

/** A file cannot be put into a NAR (sockets, devices, unreadable entries). */
export class UnsupportedFileError extends NixipfsError {
  override name = 'UnsupportedFileError'
  constructor (message: string) { super('ERR_UNSUPPORTED_FILE', message) }
}

/** A narinfo or nix-cache-info text is malformed; the message names line and field. */
export class NarInfoParseError extends NixipfsError {
  override name = 'NarInfoParseError'
  constructor (readonly line: number, readonly field: string, message: string) {
    super('ERR_NARINFO_PARSE', `line ${line}: invalid ${field} (${message})`)
  }
}

/** A Nix key file or key string is malformed. */
export class InvalidKeyError extends NixipfsError {
  override name = 'InvalidKeyError'
  constructor (message: string) { super('ERR_INVALID_KEY', message) }
}

/** A key file may be read by other users. */
export class InsecureKeyFileError extends NixipfsError {
  override name = 'InsecureKeyFileError'
  constructor (path: string, mode: number) {
    super('ERR_INSECURE_KEY_FILE', `secret key file ${path} has mode ${(mode & 0o777).toString(8)}; run: chmod 600 ${path}`)
  }
}

/** Bytes do not hash to what their address or their signed metadata says. */
export class IntegrityError extends NixipfsError {
  override name = 'IntegrityError'
  /** @param block the CID of the block that failed its check, when one did */
  constructor (message: string, readonly block?: string) { super('ERR_INTEGRITY', message) }
}

/** Something exists but cannot be served right now (a followed cache whose record expired, an inconsistent cache…): HTTP 503, which Nix does not remember as a miss. */
export class UnavailableError extends NixipfsError {
  override name = 'UnavailableError'
  constructor (message: string, code = 'ERR_UNAVAILABLE') { super(code, message) }
}

/** A cache did not answer in time, while others did: it does not count this time (a 503, as any UnavailableError). */
export class LateAnswerError extends UnavailableError {
  override name = 'LateAnswerError'
}

/** A cache contradicts itself: two of its narinfos give one NAR different NarHashes, so the later one is refused. */
export class InconsistentCacheError extends UnavailableError {
  override name = 'InconsistentCacheError'
  constructor (readonly nar: string, storePath: string, claimed: string, first: { storePath?: string, narHash: string, verified?: boolean }) {
    super(`this cache is inconsistent here: the narinfo of ${storePath} gives NAR ${nar} the NarHash ${claimed}, ` +
      `but ${first.storePath === undefined ? 'another narinfo' : `the narinfo of ${first.storePath}`} gave it ${first.narHash} first${first.verified === true ? ' (which its bytes match)' : ''}; ` +
      'the narinfo is refused: its publisher must republish it with the NAR\'s true NarHash', 'ERR_INCONSISTENT_CACHE')
  }
}

/** A block is not in the local repo (and this node may not fetch it). */
export class BlockNotFoundError extends NixipfsError {
  override name = 'BlockNotFoundError'
  constructor (cid: string) { super('ERR_BLOCK_NOT_FOUND', `block ${cid} is not in the local repo`) }
}

/** The installed Nix failed or is missing. */
export class NixCommandError extends NixipfsError {
  override name = 'NixCommandError'
  constructor (message: string) { super('ERR_NIX_COMMAND', message) }
}

/** The repo has no key, no record, or is otherwise not ready for the command. */
export class RepoError extends NixipfsError {
  override name = 'RepoError'
  constructor (message: string) { super('ERR_REPO', message) }
}

/** An IPNS record is invalid, forged, rolled back or expired. */
export class RecordError extends NixipfsError {
  override name = 'RecordError'
  constructor (code: string, message: string) { super(code, message) }
}

/** The user gave a bad argument. */
export class UsageError extends NixipfsError {
  override name = 'UsageError'
  constructor (message: string) { super('ERR_USAGE', message) }
}

/** A nix.conf cannot be read or written where it was asked to be. */
export class NixConfError extends NixipfsError {
  override name = 'NixConfError'
  constructor (message: string, options?: { cause?: unknown }) { super('ERR_NIX_CONF', message, options) }
}

/** The HTTP server cannot listen where it was asked to (address in use, not this machine's, privileged port). */
export class ListenError extends NixipfsError {
  override name = 'ListenError'
  constructor (message: string) { super('ERR_LISTEN', message) }
}

/** A peer (HTTP gateway or libp2p node) failed, stalled or sent something unusable. */
export class PeerError extends NixipfsError {
  override name = 'PeerError'
  constructor (readonly peer: string, message: string) { super('ERR_PEER', message) }
}

/** No local copy and no peer could supply a block. */
export class BlockUnavailableError extends NixipfsError {
  override name = 'BlockUnavailableError'
  constructor (cid: string, asked: string[]) {
    super('ERR_BLOCK_UNAVAILABLE', asked.length === 0
      ? `block ${cid} is not in the local repo and no peers are configured (add --peer or --http-gateway, or drop --offline)`
      : `block ${cid} is not in the local repo and no peer could supply it (${asked.join('; ')})`)
  }
}

/** The block store changed under an operation that needed it still (a compaction, a mark set), or was compacted under a writer. */
export class StoreError extends NixipfsError {
  override name = 'StoreError'
  constructor (code: 'ERR_STORE_CHANGED' | 'ERR_STORE_COMPACTED', message: string) { super(code, message) }
}

/** The repo's pins file holds something that is not a CID. */
export class PinsError extends NixipfsError {
  override name = 'PinsError'
  constructor (message: string) { super('ERR_PINS', message) }
}

/** An upstream binary cache failed, stalled, or sent something that does not check out. */
export class UpstreamError extends NixipfsError {
  override name = 'UpstreamError'
  constructor (code: string, message: string) { super(code, message) }
}

/** A followed cache's index is larger than --max-index allows. */
export class IndexBudgetError extends NixipfsError {
  override name = 'IndexBudgetError'
  constructor (cache: string, maxBytes: number) {
    super('ERR_INDEX_BUDGET', `the index of /ipns/${cache} is larger than --max-index (${maxBytes} bytes); following it stops (raise --max-index if this cache really is that large, then restart)`)
  }
}

/** Writing to disk failed (full, over quota, or an I/O error); whatever failed to be written is not indexed, so nothing a record reaches changed. */
export class DiskError extends NixipfsError {
  override name = 'DiskError'
  constructor (readonly where: string, readonly errno: string, readonly neededBytes: number | undefined, readonly freeBytes: number | undefined, options?: { cause?: unknown, advice?: string }) {
    const full = errno === 'ENOSPC' || errno === 'EDQUOT'
    const space = neededBytes === undefined ? '' : `: it needed about ${formatBytes(neededBytes)}${freeBytes === undefined ? '' : `, ${formatBytes(freeBytes)} ${freeBytes === 1 ? 'was' : 'were'} free`}`
    super(full ? 'ERR_DISK_FULL' : errno === 'EROFS' ? 'ERR_DISK_READ_ONLY' : 'ERR_DISK_IO', full
      ? `the disk holding ${where} is full (${errno})${space}. Nothing a record reaches was changed; ${options?.advice ?? 'free space (nixipfs gc, or a larger disk)'} and run the command again`
      : errno === 'EROFS'
        ? `the file system holding ${where} is read-only (EROFS). Nothing was changed; mount it read-write or choose another place, then run the command again`
        : `writing to ${where} failed with ${errno} (the disk reported an error)${space}. Nothing a record reaches was changed; check the disk, then run \`nixipfs fsck\` and the command again`, options)
  }
}

/** A file or directory could not be used: its permissions, or a file where a directory belongs. */
export class FileAccessError extends NixipfsError {
  override name = 'FileAccessError'
  constructor (message: string, options?: { cause?: unknown }) { super('ERR_FILE_ACCESS', message, options) }
}

/** `nixipfs fsck` found damage in the repo (that a repair could not mend). */
export class RepoDamagedError extends NixipfsError {
  override name = 'RepoDamagedError'
  constructor (message: string) { super('ERR_REPO_DAMAGED', message) }
}

/** A Pinning Service API server refused or failed a request, or cannot be reached; `code` says which (ERR_PIN_SERVICE_UNREACHABLE, ERR_PIN_SERVICE_AUTH, ERR_PIN_SERVICE, ERR_PIN_FAILED, ERR_PIN_TIMEOUT). */
export class PinServiceError extends NixipfsError {
  override name = 'PinServiceError'
  constructor (code: string, message: string) { super(code, message) }
}

/** The repo's remote pins file (`remote-pins.json`) cannot be read. */
export class RemotePinsError extends NixipfsError {
  override name = 'RemotePinsError'
  constructor (message: string) { super('ERR_REMOTE_PINS', message) }
}
