import { CID_RECIPE_CDC, CID_RECIPE_FIXED, FIXED_CHUNK_BYTES } from '../constants.js'
import { cdcChunker, CDC_V1 } from '../ipfs/cdc.js'
import { fixedChunker } from '../ipfs/chunker.js'
import type { CidRecipe } from './publish.js'

/** The CID recipes a publisher can choose, by `--chunker` value; `cdc` is the default. */
export const RECIPES: Record<'cdc' | 'fixed', CidRecipe> = {
  cdc: { name: CID_RECIPE_CDC, chunker: cdcChunker(CDC_V1) },
  fixed: { name: CID_RECIPE_FIXED, chunker: fixedChunker(FIXED_CHUNK_BYTES) }
}
