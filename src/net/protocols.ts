// The protocol names and fetch keys nodes speak, apart from the libp2p stack
// (net/p2p.ts), so that a module can name them without loading it.

/** Prefix of libp2p fetch keys under which nodes hand out IPNS records: `/ipns/<name>`. */
export const RECORD_KEY_PREFIX = '/ipns/'

/**
 * Prefix of libp2p fetch keys under which nodes say which caches they hold a
 * narinfo in: `/nixipfs/narinfo/<32-char store path hash>` answers, per cache,
 * its IPNS name (k51…) on a line, then the narinfo's text (see
 * net/rendezvous.ts); no value when none. Asked of the providers of a path's
 * rendezvous CID (discovery).
 */
export const NARINFO_KEY_PREFIX = '/nixipfs/narinfo/'

/** The libp2p fetch protocol nodes hand out records over. */
export const FETCH_PROTOCOL = '/libp2p/fetch/0.0.1'

/** The DHT protocol of the public IPFS network (kubo's Amino DHT). */
export const DHT_PROTOCOL = '/ipfs/kad/1.0.0'
