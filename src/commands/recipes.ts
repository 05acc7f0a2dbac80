import { CID_RECIPE_CDC, CID_RECIPE_FIXED, FIXED_CHUNK_BYTES } from '../constants.js'
import { UsageError } from '../errors.js'
import { cdcChunker, CDC_V1 } from '../ipfs/cdc.js'
import { fixedChunker } from '../ipfs/chunker.js'
import type { CidRecipe } from '../cache/publish.js'

/** The CID recipes a publisher can choose, by `--chunker` value. */
export const RECIPES: Record<string, CidRecipe> = {
  cdc: { name: CID_RECIPE_CDC, chunker: cdcChunker(CDC_V1) },
  fixed: { name: CID_RECIPE_FIXED, chunker: fixedChunker(FIXED_CHUNK_BYTES) }
}

/** The recipe for a `--chunker` value. */
export function recipeOf (chunker: string): CidRecipe {
  const recipe = RECIPES[chunker]
  if (recipe === undefined) throw new UsageError(`unknown chunker ${JSON.stringify(chunker)}; choose one of: ${Object.keys(RECIPES).join(', ')}`)
  return recipe
}
