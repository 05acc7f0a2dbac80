/** A bounded map that forgets the least recently used entry: for caches that outside requests fill. */
export class Lru<V> {
  private readonly map = new Map<string, V>()
  private weight = 0

  /** At most `max` entries and, when `weigh` is given, at most `maxWeight` in total (e.g. bytes a stranger may make us hold). */
  constructor (private readonly max: number, private readonly weigh?: (value: V) => number, private readonly maxWeight = Infinity) {}

  get size (): number { return this.map.size }

  get (key: string): V | undefined {
    const v = this.map.get(key)
    if (v !== undefined) { this.map.delete(key); this.map.set(key, v) }
    return v
  }

  set (key: string, value: V): void {
    this.delete(key)
    this.map.set(key, value)
    this.weight += this.weigh?.(value) ?? 0
    while (this.map.size > this.max || (this.weight > this.maxWeight && this.map.size > 1)) this.delete(this.map.keys().next().value!)
  }

  delete (key: string): void {
    const v = this.map.get(key)
    if (v === undefined) return
    this.map.delete(key)
    this.weight -= this.weigh?.(v) ?? 0
  }
}
