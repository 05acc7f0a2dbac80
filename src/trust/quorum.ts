import type { NarEntry, NarInfoEntry } from '../cache/index.js'
import { AFTER_HIT_MS, currentIndexes, firstAnswer, isOpening, settledAnswers, type IndexSource } from '../cache/source.js'
import type { Dispute, ServedCaches } from '../cache/union.js'
import { UnavailableError } from '../errors.js'
import { Lru } from '../lru.js'
import { fingerprint, formatNarInfo, type NarInfo } from '../nix/narinfo.js'
import { formatPublicKey, verifyFingerprint, type PublicKey } from '../nix/signing.js'
import { formatRealisation, parseRealisation, realisationFingerprint, realisationSigners, type Realisation } from '../nix/realisation.js'

/** Whom a gateway trusts, and how many of them must agree. */
export interface TrustPolicy {
  keys: PublicKey[]
  /** distinct trusted keys that must have signed the same NarHash, NarSize and References */
  threshold: number
  /** store path names (globs over the part after the hash) known not to build reproducibly: disagreement on them is no dispute */
  nonReproducible?: string[]
}

/** The outcome for one store path. */
export type Verdict =
  | { served: NarInfoEntry, keys: string[], dispute?: Dispute }
  | { served: undefined, reason: string, dispute?: Dispute }

interface Group {
  info: NarInfo
  /** trusted key (name:base64) → its valid signature line */
  sigs: Map<string, string>
  /** trusted keys whose rebuild gave this NAR */
  voters: Set<string>
  members: NarInfoEntry[]
}

/** `*` matches any run of characters, everything else itself. */
function globMatch (pattern: string, text: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map(p => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`)
  return re.test(text)
}

/** ` (the signatures by NAME… do not verify: forged or altered)` when narinfos carry signatures under trusted key names that fail. */
function forgedNames (entries: NarInfoEntry[], policy: TrustPolicy): string {
  const trusted = new Set(policy.keys.map(k => k.name))
  const names = new Set(entries.flatMap(e => e.info.sigs.map(s => s.slice(0, s.indexOf(':')))).filter(n => trusted.has(n)))
  return names.size === 0 ? '' : ` (the signature by ${[...names].join(', ')} does not verify: forged, or the narinfo was altered)`
}

/** A rebuild result (a signed dispute statement): `key` (name:base64) rebuilt `storePath` and got this NAR. */
export interface RebuildVote { key: string, storePath: string, narHash: string, narSize: number }

/** The base64 part of `name:base64`: a key is the same key under any name. */
const keyBytes = (key: string): string => key.slice(key.indexOf(':') + 1)

/**
 * Decides what to serve for one store path from the narinfos several caches
 * hold for it: narinfos are grouped by what the signature covers (StorePath,
 * NarHash, NarSize, References) and a group is served only when at least
 * `threshold` distinct trusted keys signed it, with all their signatures.
 * Keys outside the trust set never count, however many agree. A trusted
 * key's rebuild result (`votes`) counts as its vote for the NarHash it
 * rebuilt; a NarHash that only votes back, which no cache offers, is never
 * served, but it can reach the threshold too, and then the path is refused.
 */
export function judge (entries: NarInfoEntry[], policy: TrustPolicy, votes: RebuildVote[] = []): Verdict {
  const groups = new Map<string, Group>()
  for (const entry of entries) {
    const { info } = entry
    // What the signature covers is what must agree.
    const fp = fingerprint(info)
    let group = groups.get(fp)
    if (group === undefined) {
      group = { info, sigs: new Map(), voters: new Set(), members: [] }
      groups.set(fp, group)
    }
    group.members.push(entry)
    for (const trusted of policy.keys) {
      const id = formatPublicKey(trusted)
      if (group.sigs.has(id)) continue
      const sig = info.sigs.find(s => verifyFingerprint([trusted], fp, s))
      if (sig !== undefined) group.sigs.set(id, sig)
    }
  }
  const storePath = entries[0]?.info.storePath ?? ''
  // Rebuilt NARs no cache offers: NarHash and NarSize → the trusted keys that rebuilt them.
  const rebuiltOnly = new Map<string, { narHash: string, narSize: number, voters: Set<string> }>()
  const trustedIds = new Map(policy.keys.map(k => [keyBytes(formatPublicKey(k)), formatPublicKey(k)]))
  for (const vote of votes) {
    const id = trustedIds.get(keyBytes(vote.key))
    if (id === undefined || vote.storePath !== storePath) continue
    const same = [...groups.values()].filter(g => g.info.narHash === vote.narHash && g.info.narSize === vote.narSize)
    for (const g of same) g.voters.add(id)
    if (same.length > 0) continue
    const at = `${vote.narHash} ${vote.narSize}`
    const alone = rebuiltOnly.get(at) ?? { narHash: vote.narHash, narSize: vote.narSize, voters: new Set<string>() }
    alone.voters.add(id)
    rebuiltOnly.set(at, alone)
  }
  const keysOf = (g: Group): string[] => [...new Set([...g.sigs.keys(), ...g.voters])]
  const signed = [...groups.values()].filter(g => keysOf(g).length > 0)
  const name = storePath.slice(storePath.lastIndexOf('/') + 1 + 33)
  const expected = policy.nonReproducible?.some(p => globMatch(p, name)) === true
  const dispute: Dispute | undefined = signed.length + rebuiltOnly.size > 1 && !expected
    ? {
        storePath,
        groups: [
          ...signed.map(g => ({ narHash: g.info.narHash, narSize: g.info.narSize, references: g.info.references, keys: keysOf(g) })),
          // No narinfo, so no references: only the NAR a verifier rebuilt.
          ...[...rebuiltOnly.values()].map(r => ({ narHash: r.narHash, narSize: r.narSize, references: [], keys: [...r.voters] }))
        ]
      }
    : undefined
  const winners = signed.filter(g => keysOf(g).length >= policy.threshold)
  const rebuiltWinners = [...rebuiltOnly.values()].filter(r => r.voters.size >= policy.threshold)
  if (winners.length === 1 && rebuiltWinners.length === 0) {
    const g = winners[0]!
    const info: NarInfo = { ...g.info, sigs: [...g.sigs.values()] }
    return { served: { ...g.members[0]!, text: formatNarInfo(info), info }, keys: keysOf(g), dispute }
  }
  const best = Math.max(0, ...signed.map(g => keysOf(g).length), ...[...rebuiltOnly.values()].map(r => r.voters.size))
  const reason = winners.length + rebuiltWinners.length > 1
    ? `${storePath}: ${winners.length + rebuiltWinners.length} different NARs each reached the threshold of ${policy.threshold} trusted signatures or rebuilds; refusing it`
    : rebuiltWinners.length === 1
      ? `${storePath}: ${rebuiltWinners[0]!.voters.size} trusted verifiers rebuilt it as ${rebuiltWinners[0]!.narHash}, a NAR no cache offers; refusing it`
      : signed.length === 0
        ? `${storePath}: no trusted key signed it${forgedNames(entries, policy)}`
        : `${storePath}: at most ${best} of the ${policy.threshold} trusted signatures required agree${dispute === undefined ? '' : ` (trusted builders disagree: ${signed.length + rebuiltOnly.size} different NARs)`}`
  return { served: undefined, reason, dispute }
}

export interface QuorumOptions {
  policy: TrustPolicy
  /** rebuild results known for a store path (by its hash): trusted verifiers' votes */
  votes?: (hash: string) => RebuildVote[]
  onDispute?: (dispute: Dispute) => void
  onRefused?: (reason: string) => void
}

/** NARs remembered as approved (a narinfo lookup, then its NAR, comes well within this many others). */
const APPROVED_NARS = 50_000

/**
 * Serves several caches under a trust policy: a narinfo only when the
 * policy's quorum signed it (see judge), and a NAR only when a narinfo so
 * served names it, checked against that narinfo's NarHash.
 */
export function quorumOf (sources: IndexSource[], options: QuorumOptions): () => Promise<ServedCaches | undefined> {
  // NARs that agreed narinfos name, with the NarHash and size the quorum signed.
  const approved = new Lru<{ narHash: string, narSize: number, entry?: NarEntry }>(APPROVED_NARS)
  const approve = (served: NarInfoEntry): NarInfoEntry => {
    const nar = served.nar.toString()
    const { narHash, narSize } = served.info
    const known = approved.get(nar)
    if (known?.narHash !== narHash || known.narSize !== narSize) approved.set(nar, { narHash, narSize })
    return served
  }
  /**
   * Judges a served path again with the answers of the caches that were late: the dispute they show is recorded, and
   * a NAR they deny the quorum (two NARs reached the threshold) is no longer served.
   */
  const rejudge = (served: NarInfoEntry, entries: NarInfoEntry[], votes: RebuildVote[] | undefined): void => {
    const verdict = judge(entries, options.policy, votes)
    if (verdict.dispute !== undefined) options.onDispute?.(verdict.dispute)
    if (verdict.served?.info.narHash === served.info.narHash && verdict.served.info.narSize === served.info.narSize) return
    approved.delete(served.nar.toString())
    if (verdict.served === undefined) options.onRefused?.(verdict.reason)
  }
  return async () => {
    const indexes = await currentIndexes(sources)
    if (indexes.length === 0) return undefined
    return {
      cacheInfo: indexes.find(i => i.cacheInfo !== '')?.cacheInfo ?? '',
      narInfo: async (hash) => {
        // A cache whose narinfo cannot be read or is refused simply does not count towards the quorum. Once the
        // answers so far would be served, the other open caches get a second more: enough to see a disagreement.
        // Caches still opening are not waited for (a second of every discovered narinfo on the 50-node bench; up
        // to 16 s when they were waited for in full): they are judged when they answer (below).
        const votes = options.votes?.(hash)
        const { results, late, all } = await settledAnswers(indexes, async i => await i.narInfo(hash), hits => judge(hits, options.policy, votes).served !== undefined ? AFTER_HIT_MS : undefined, isOpening)
        const entriesOf = (answers: typeof results): NarInfoEntry[] => answers.flatMap(r => r.status === 'fulfilled' && r.value !== undefined ? [r.value] : [])
        const entries = entriesOf(results)
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
        if (entries.length === 0 && failed !== undefined) throw failed.reason
        if (entries.length === 0) return undefined
        const verdict = judge(entries, options.policy, votes)
        if (verdict.dispute !== undefined) options.onDispute?.(verdict.dispute)
        // A content-addressed path certifies itself (Nix checks its bytes against the path): it needs no quorum.
        const selfCertified = verdict.served ?? entries.find(e => e.info.ca !== undefined && !e.info.ca.startsWith('text:'))
        if (selfCertified === undefined) {
          if (verdict.served === undefined) options.onRefused?.(verdict.reason)
          // A cache that may not be served right now might have tipped the quorum: not a miss Nix should remember.
          const unavailable = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && r.reason instanceof UnavailableError)
          if (unavailable !== undefined) throw unavailable.reason
          return undefined
        }
        if (verdict.served === undefined) return approve(selfCertified)
        if (late) {
          all().then(answers => rejudge(verdict.served!, entriesOf(answers), votes), () => {})
        }
        return approve(verdict.served)
      },
      nar: async (cid): Promise<NarEntry | undefined> => {
        const signedFor = approved.get(cid)
        if (signedFor === undefined) return undefined
        if (signedFor.entry !== undefined) return signedFor.entry // keeps its `verified` mark across requests
        let failure: unknown
        for (const index of indexes) {
          // One cache that cannot answer (not servable now, a corrupt block) does not hide the next one's copy.
          const entry = await index.nar(cid).catch(err => { failure ??= err })
          if (entry !== undefined) {
            signedFor.entry = { cid: entry.cid, narHash: signedFor.narHash, narSize: signedFor.narSize }
            return signedFor.entry
          }
        }
        if (failure !== undefined) throw failure
        return undefined
      },
      realisation: async (id) => {
        const texts = (await Promise.all(indexes.map(async i => await i.realisation(id)))).filter((t): t is string => t !== undefined)
        const docs = texts.flatMap(t => { try { return [parseRealisation(t)] } catch { return [] } }) // a malformed one counts for nothing
        const verdict = judgeRealisation(docs, options.policy)
        if (verdict.served === undefined) {
          if (texts.length > 0) options.onRefused?.(`realisation ${id}: ${verdict.reason}`)
          return undefined
        }
        return formatRealisation(verdict.served)
      },
      // A build log is informational, not trusted content (Nix checks no signature on it): the first followed cache that has one serves it.
      log: async (drv) => await firstAnswer(indexes, i => i.log(drv))
    }
  }
}

/**
 * The realisation (derivation output → store path) that at least `threshold`
 * trusted keys signed, with their signatures: for a CA output this mapping is
 * the only thing that needs trust.
 */
export function judgeRealisation (docs: Realisation[], policy: TrustPolicy): { served: Realisation } | { served: undefined, reason: string } {
  const groups = new Map<string, { doc: Realisation, sigs: Map<string, string> }>()
  for (const doc of docs) {
    const fp = realisationFingerprint(doc)
    const group = groups.get(fp) ?? { doc, sigs: new Map<string, string>() }
    groups.set(fp, group)
    for (const { key, sig } of realisationSigners(doc, policy.keys)) {
      const id = formatPublicKey(key)
      if (!group.sigs.has(id)) group.sigs.set(id, sig)
    }
  }
  const winners = [...groups.values()].filter(g => g.sigs.size >= policy.threshold)
  if (winners.length === 1) return { served: { ...winners[0]!.doc, signatures: [...winners[0]!.sigs.values()] } }
  const best = Math.max(0, ...[...groups.values()].map(g => g.sigs.size))
  return { served: undefined, reason: winners.length > 1 ? 'trusted builders realised it as different paths' : `at most ${best} of the ${policy.threshold} trusted signatures required agree` }
}
