/**
 * Small statistics helpers for the benchmarks: percentiles, summaries, ratios.
 */

/** The p-th percentile (0..100) of already sorted samples (nearest rank). */
export const percentile = (sorted: ArrayLike<number>, p: number): number => {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.ceil((p / 100) * sorted.length) - 1
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]
}

export interface Summary {
  readonly n: number
  readonly mean: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
}

/** Summarize samples (copied and sorted; the input is left alone). */
export const summarize = (samples: ArrayLike<number>): Summary => {
  const sorted = Float64Array.from(samples).sort()
  let sum = 0
  for (let i = 0; i < sorted.length; i++) sum += sorted[i]
  return {
    n: sorted.length,
    mean: round(sorted.length === 0 ? Number.NaN : sum / sorted.length),
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1])
  }
}

/** Round to 3 significant decimals (enough for ms and req/s). */
export const round = (x: number, digits = 3): number => {
  if (!Number.isFinite(x)) return x
  const f = 10 ** digits
  return Math.round(x * f) / f
}

/** ours / baseline, rounded to 2 decimals. */
export const ratio = (ours: number, baseline: number): number => round(ours / baseline, 2)

/** The median of a few numbers. */
export const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Format a number for a table: thousands separators, fixed decimals. */
export const fmt = (x: number, decimals = 0): string =>
  Number.isFinite(x) ? x.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals }) : String(x)
