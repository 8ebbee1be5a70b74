/** Runs f over items with at most `n` at a time, in the order of `items`. */
export async function forEachLimit<T>(items: readonly T[], n: number, f: (item: T, index: number) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (i < items.length) {
        const k = i++;
        await f(items[k]!, k);
      }
    }),
  );
}
