import { UsageError } from '../errors.js'
import type { CidRecipe } from '../cache/publish.js'
import { RECIPES } from '../cache/recipes.js'

export { RECIPES }

/** The recipe for a `--chunker` value. */
export function recipeOf (chunker: string): CidRecipe {
  const recipe = (RECIPES as Record<string, CidRecipe | undefined>)[chunker]
  if (recipe === undefined) throw new UsageError(`unknown chunker ${JSON.stringify(chunker)}; choose one of: ${Object.keys(RECIPES).join(', ')}`)
  return recipe
}
