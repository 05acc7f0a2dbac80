/** The Nix store directory every published path must live in. */
export const STORE_DIR = '/nix/store'

/** Names of CID recipes: how a NAR becomes blocks. A change of any parameter is a new name. */
export const CID_RECIPE_CDC = 'cdc-v1'
export const CID_RECIPE_FIXED = 'fixed-256k-v1'

/** Fixed-size chunk length used by the `fixed-256k-v1` recipe. */
export const FIXED_CHUNK_BYTES = 256 * 1024

/** Children per node of the balanced UnixFS DAG (same as kubo and Helia). */
export const DAG_WIDTH = 174

/** One hour, in milliseconds. */
export const HOUR_MS = 60 * 60 * 1000

/** How long a freshly signed IPNS record is valid. */
export const DEFAULT_RECORD_LIFETIME_MS = 48 * HOUR_MS

/** How long a follower keeps serving a cache whose record expired (with a warning). */
export const DEFAULT_EXPIRED_GRACE_MS = 24 * HOUR_MS

/** Default gateway listen address: loopback only. */
export const DEFAULT_LISTEN = '127.0.0.1:8080'

/** Priority announced in nix-cache-info (cache.nixos.org uses 40; lower wins). */
export const DEFAULT_PRIORITY = 30

/** libp2p listen address of a node unless told otherwise: loopback only; listening beyond it (seeding to the network) is asked for with --listen-p2p. */
export const DEFAULT_LISTEN_P2P = '/ip4/127.0.0.1/tcp/4001'

/** Seconds between asking peers for newer records of followed caches. */
export const DEFAULT_FOLLOW_INTERVAL_S = 60

/** Seconds a peer may stall before it is given up for a block (--peer-timeout). */
export const DEFAULT_PEER_TIMEOUT_S = 10

/** The most one followed cache's index may take (--max-index): about a million narinfos. */
export const DEFAULT_MAX_INDEX = '1G'

/** HTTP connections to one peer at once (--peer-connections). */
export const DEFAULT_PEER_CONNECTIONS = 16

/** HTTP connections the gateway serves at once unless told otherwise: sized for a public server (an idle connection costs a few KiB and a file descriptor). */
export const DEFAULT_MAX_CONNECTIONS = 8192
/** Largest HTTP request head the gateway accepts unless told otherwise (Node's own default). */
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024
/** Time to send a whole request head unless told otherwise: a head is a few hundred bytes, so slow dripping (slowloris) or silence is cut off. */
export const DEFAULT_HEAD_TIMEOUT_MS = 10_000
