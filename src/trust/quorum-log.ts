import type { Dispute } from '../cache/union.js'
import { recordDispute } from './disputes.js'
import type { QuorumOptions, TrustPolicy } from './quorum.js'

/** Records disputes and says (once per path) why a path was refused; counts both. */
export class QuorumLog {
  refusals = 0
  disputes = 0
  private readonly told = new Set<string>()

  constructor (private readonly repo: string, private readonly log: { warn: (m: string) => void }) {}

  /** Records a dispute, saying so when it is new; `who` signed the different NARs. */
  disputeRecorder (who: string): (dispute: Dispute) => void {
    return (dispute) => {
      recordDispute(this.repo, dispute).then(
        isNew => { if (isNew) { this.disputes++; this.log.warn(`dispute: ${who} signed ${dispute.groups.length} different NARs for ${dispute.storePath} (nixipfs disputes, GET /disputes)`) } },
        (err: Error) => this.log.warn(`recording the dispute over ${dispute.storePath} failed: ${err.message}`))
    }
  }

  /** The options of a quorum under `policy` that record its disputes and refusals here. */
  hooks (policy: TrustPolicy): QuorumOptions {
    return {
      policy,
      onDispute: this.disputeRecorder('trusted builders'),
      onRefused: (reason) => {
        this.refusals++
        if (this.told.has(reason)) return
        this.told.add(reason)
        this.log.warn(`refused ${reason}`)
      }
    }
  }
}
