// Drift detection without a write: is every field we apply present, with the
// same value, in the object the cluster holds? Fields the apiserver or others
// add (defaults, status, other managers' fields) do not count as drift.

/** Quantities and numbers the apiserver may print differently ("1" vs 1). */
const sameScalar = (want: unknown, have: unknown) => want === have || (typeof want === 'number' && String(want) === have);

export function isSubset(want: unknown, have: unknown): boolean {
  if (want === undefined) return true;
  if (Array.isArray(want)) {
    return Array.isArray(have) && want.length === have.length && want.every((w, i) => isSubset(w, have[i]));
  }
  if (want !== null && typeof want === 'object') {
    if (have === null || typeof have !== 'object' || Array.isArray(have)) return false;
    const h = have as Record<string, unknown>;
    return Object.entries(want as Record<string, unknown>).every(([k, w]) => isSubset(w, h[k]));
  }
  return sameScalar(want, have);
}
