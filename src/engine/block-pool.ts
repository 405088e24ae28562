// The pool of KV-cache blocks: reference counts, a free queue in LRU order, and the map from
// chained block hash to the cached block that holds that content.
//
// A block whose reference count drops to 0 keeps its content and its hash: it sits in the free
// queue, can still be hit by a later request (which takes it out of the queue), and loses its
// hash only when the queue hands it out for new content. The queue is an intrusive doubly
// linked list over typed arrays so that taking a hit block out of the middle is O(1).

import { BlockHashTable, type TokenSource } from "./block-hash.ts";

export class BlockPool {
  private readonly refCounts: Int32Array;
  // Free queue: next/prev links with a sentinel at index numBlocks; head = next[sentinel].
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly sentinel: number;
  private freeCount: number;
  // Cached content: the block's hash, its parent's hash and its token ids, for verification.
  private readonly hasHash: Uint8Array;
  private readonly hashes: Float64Array;
  private readonly parentHashes: Float64Array;
  private readonly tokens: Int32Array;
  private readonly byHash: BlockHashTable;

  constructor(
    readonly numBlocks: number,
    readonly blockSize: number,
  ) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) {
      throw new Error(`BlockPool: numBlocks must be a positive integer, got ${numBlocks}`);
    }
    if (!Number.isInteger(blockSize) || blockSize < 1) {
      throw new Error(`BlockPool: blockSize must be a positive integer, got ${blockSize}`);
    }
    this.refCounts = new Int32Array(numBlocks);
    this.next = new Int32Array(numBlocks + 1);
    this.prev = new Int32Array(numBlocks + 1);
    this.sentinel = numBlocks;
    this.hasHash = new Uint8Array(numBlocks);
    this.hashes = new Float64Array(numBlocks);
    this.parentHashes = new Float64Array(numBlocks);
    this.byHash = new BlockHashTable(numBlocks);
    this.tokens = new Int32Array(numBlocks * blockSize);
    this.next[this.sentinel] = this.sentinel;
    this.prev[this.sentinel] = this.sentinel;
    this.freeCount = 0;
    for (let id = 0; id < numBlocks; id++) this.appendFree(id);
  }

  /** Blocks no request holds (cached or not): what allocate() can hand out. */
  get numFreeBlocks(): number {
    return this.freeCount;
  }

  /** Number of hashes in the prefix cache (held or free blocks). */
  get numCachedBlocks(): number {
    return this.byHash.size;
  }

  refCount(id: number): number {
    this.checkId(id);
    return this.refCounts[id]!;
  }

  isCached(id: number): boolean {
    this.checkId(id);
    return this.hasHash[id] === 1;
  }

  /** The free queue from the block reused first to the one reused last (for tests and debugging). */
  freeQueue(): number[] {
    const ids: number[] = [];
    for (let id = this.next[this.sentinel]!; id !== this.sentinel; id = this.next[id]!) ids.push(id);
    return ids;
  }

  /**
   * Takes `n` blocks from the head of the free queue (least recently freed first), evicting any
   * cached content they held, and appends their ids to `out` with reference count 1.
   */
  allocate(n: number, out: number[]): void {
    if (n > this.freeCount) {
      throw new Error(`BlockPool: asked for ${n} blocks, only ${this.freeCount} free`);
    }
    for (let k = 0; k < n; k++) {
      const id = this.next[this.sentinel]!;
      this.unlinkFree(id);
      this.evict(id);
      this.refCounts[id] = 1;
      out.push(id);
    }
  }

  /** Adds a reference to a block (a prefix-cache hit); a free block leaves the free queue. */
  touch(id: number): void {
    this.checkId(id);
    if (this.refCounts[id] === 0) this.unlinkFree(id);
    this.refCounts[id]!++;
  }

  /** Drops a reference; at 0 the block goes to the tail of the free queue, content kept. */
  release(id: number): void {
    this.checkId(id);
    if (this.refCounts[id]! <= 0) throw new Error(`BlockPool: block ${id} released while free`);
    if (--this.refCounts[id]! === 0) this.appendFree(id);
  }

  /**
   * The block caching `hash`, if its parent hash and token ids match tokens
   * [start, start + blockSize) of `src`; -1 otherwise.
   */
  lookup(hash: number, parentHash: number, src: TokenSource, start: number): number {
    const id = this.byHash.get(hash);
    if (id < 0 || this.parentHashes[id] !== parentHash) return -1;
    const base = id * this.blockSize;
    for (let i = 0; i < this.blockSize; i++) {
      if (this.tokens[base + i] !== src.tokenAt(start + i)) return -1;
    }
    return id;
  }

  /**
   * Registers a held, full block as holding tokens [start, start + blockSize) of `src` under
   * `hash`. Returns false (and caches nothing) when another block already caches that hash or
   * this block is already cached.
   */
  cache(id: number, hash: number, parentHash: number, src: TokenSource, start: number): boolean {
    this.checkId(id);
    if (this.refCounts[id] === 0) throw new Error(`BlockPool: caching free block ${id}`);
    if (this.hasHash[id] === 1 || !this.byHash.insert(hash, id)) return false;
    this.hasHash[id] = 1;
    this.hashes[id] = hash;
    this.parentHashes[id] = parentHash;
    const base = id * this.blockSize;
    for (let i = 0; i < this.blockSize; i++) this.tokens[base + i] = src.tokenAt(start + i);
    return true;
  }

  /** Forgets every cached hash; blocks and reference counts are untouched. */
  resetPrefixCache(): void {
    this.byHash.clear();
    this.hasHash.fill(0);
  }

  private evict(id: number): void {
    if (this.hasHash[id] === 0) return;
    this.hasHash[id] = 0;
    this.byHash.remove(this.hashes[id]!, id);
  }

  private appendFree(id: number): void {
    const last = this.prev[this.sentinel]!;
    this.next[last] = id;
    this.prev[id] = last;
    this.next[id] = this.sentinel;
    this.prev[this.sentinel] = id;
    this.freeCount++;
  }

  private unlinkFree(id: number): void {
    const p = this.prev[id]!;
    const n = this.next[id]!;
    this.next[p] = n;
    this.prev[n] = p;
    this.freeCount--;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.numBlocks) {
      throw new Error(`BlockPool: block id ${id} out of range [0, ${this.numBlocks})`);
    }
  }
}
