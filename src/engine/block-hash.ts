// Chained block hashes for prefix caching, and the table that maps them to cached blocks.
//
// A block's hash covers its parent's hash and its own token ids, so equal hashes mean equal
// prefixes up to collisions, which the block pool rules out by comparing parent hash and token
// ids on a hit (a collision only costs a cache miss). Hashes are 53-bit integers held in plain
// numbers: BigInt arithmetic costs ~100 ns per operation in JSC and allocates, which made hashing
// the dominant cost of a decode step. The mixing is MurmurHash3-style on two 32-bit lanes.

/** Anything that can say which token sits at a position of a sequence (a Request does). */
export interface TokenSource {
  tokenAt(i: number): number;
}

/** The parent hash of a sequence's first block. */
export const ROOT_BLOCK_HASH = 0x9e3779b97f4a7;

const TWO_32 = 4294967296;
const rotl = (x: number, r: number): number => (x << r) | (x >>> (32 - r));

const fmix32 = (h: number): number => {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
};

/** Hash (a safe integer) of the `len` tokens of `src` from `start`, chained onto `parent`. */
export function hashBlock(parent: number, src: TokenSource, start: number, len: number): number {
  let h1 = parent | 0;
  let h2 = Math.floor(parent / TWO_32) | 0;
  for (let i = 0; i < len; i++) {
    const t = src.tokenAt(start + i) | 0;
    let k = Math.imul(rotl(Math.imul(t, 0xcc9e2d51), 15), 0x1b873593);
    h1 = (Math.imul(rotl(h1 ^ k, 13), 5) + 0xe6546b64) | 0;
    // The second lane sees the token through other constants so the lanes do not move together.
    k = Math.imul(rotl(Math.imul(t ^ 0x27d4eb2f, 0x1b873593), 17), 0xcc9e2d51);
    h2 = (Math.imul(rotl(h2 ^ k, 15), 9) + 0x38495ab5) | 0;
    h2 = (h2 + h1) | 0;
  }
  h1 ^= len;
  h2 ^= len;
  h1 = (h1 + h2) | 0;
  h2 = (h2 + h1) | 0;
  h1 = fmix32(h1);
  h2 = fmix32(h2);
  h1 = (h1 + h2) | 0;
  h2 = (h2 + h1) | 0;
  return (h2 & 0x1fffff) * TWO_32 + (h1 >>> 0);
}

/**
 * Makes sure `hashes` holds the chained hashes of blocks [0, numBlocks) of `src`, computing only
 * the missing tail: a block is hashed once per request, however often it is looked up.
 */
export function extendBlockHashes(
  hashes: number[],
  src: TokenSource,
  blockSize: number,
  numBlocks: number,
): void {
  for (let i = hashes.length; i < numBlocks; i++) {
    hashes.push(hashBlock(parentHashOf(hashes, i), src, i * blockSize, blockSize));
  }
}

/** The hash of block `i` of a request's stored hashes. */
export const blockHashAt = (hashes: readonly number[], i: number): number => hashes[i]!;

/** The parent hash of block `i` given the hashes before it. */
export const parentHashOf = (hashes: readonly number[], i: number): number =>
  i === 0 ? ROOT_BLOCK_HASH : hashes[i - 1]!;

/**
 * Block hash -> block id, open addressing with linear probing over typed arrays sized once for
 * the pool. Unlike a Map it never rehashes (a Map of 100k+ keys stalls a step for tens of ms
 * when it grows or compacts) and allocates nothing per insert. Deletion shifts entries back
 * instead of leaving tombstones, so churn does not degrade probing.
 */
export class BlockHashTable {
  private readonly keys: Float64Array;
  private readonly ids: Int32Array; // -1: empty slot
  private readonly mask: number;
  size = 0;

  constructor(maxEntries: number) {
    let capacity = 16;
    while (capacity < 2 * maxEntries) capacity *= 2; // load factor at most 1/2
    this.keys = new Float64Array(capacity);
    this.ids = new Int32Array(capacity).fill(-1);
    this.mask = capacity - 1;
  }

  /** The block id cached under `hash`, or -1. */
  get(hash: number): number {
    for (let i = this.home(hash); ; i = (i + 1) & this.mask) {
      const id = this.ids[i]!;
      if (id < 0 || this.keys[i] === hash) return id;
    }
  }

  /** Inserts the key; false (and no change) when the key is present. */
  insert(hash: number, id: number): boolean {
    let i = this.home(hash);
    for (; this.ids[i]! >= 0; i = (i + 1) & this.mask) {
      if (this.keys[i] === hash) return false;
    }
    if (2 * (this.size + 1) > this.ids.length) throw new Error("BlockHashTable: over capacity");
    this.keys[i] = hash;
    this.ids[i] = id;
    this.size++;
    return true;
  }

  /** Removes the key if it maps to `id`. */
  remove(hash: number, id: number): void {
    let i = this.home(hash);
    for (; this.ids[i] !== id || this.keys[i] !== hash; i = (i + 1) & this.mask) {
      if (this.ids[i]! < 0) return;
    }
    // Backward shift: pull later entries of the probe run into the hole unless their home slot
    // lies cyclically in (hole, j].
    for (let j = (i + 1) & this.mask; this.ids[j]! >= 0; j = (j + 1) & this.mask) {
      const home = this.home(this.keys[j]!);
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (stays) continue;
      this.keys[i] = this.keys[j]!;
      this.ids[i] = this.ids[j]!;
      i = j;
    }
    this.ids[i] = -1;
    this.size--;
  }

  clear(): void {
    this.ids.fill(-1);
    this.size = 0;
  }

  private home(hash: number): number {
    return (hash >>> 0) & this.mask; // the low lane is fmix32 output: well spread
  }
}
