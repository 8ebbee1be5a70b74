import type { Destination } from '../types.js';

export const DESTINATIONS: readonly Destination[] = ['primary', 'backup'];

/** A set of destinations in one small number (a queue of 50,000 messages holds three per message). */
export class Destinations implements Iterable<Destination> {
  private bits = 0;
  has(d: Destination): boolean {
    return (this.bits & bit(d)) !== 0;
  }
  add(d: Destination): void {
    this.bits |= bit(d);
  }
  delete(d: Destination): void {
    this.bits &= ~bit(d);
  }
  get size(): number {
    return (this.bits & 1) + ((this.bits >> 1) & 1);
  }
  *[Symbol.iterator](): Iterator<Destination> {
    for (const d of DESTINATIONS) if (this.has(d)) yield d;
  }
}
const bit = (d: Destination) => (d === 'primary' ? 1 : 2);
