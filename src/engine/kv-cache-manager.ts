// Maps requests to KV-cache blocks: append-only block tables, prefix-cache lookups and
// registration, and freeing. The scheduler pairs every allocateSlots() with a fit check inside
// it (false = nothing changed), so a request either gets all the slots of its chunk or none.

import { blockHashAt, extendBlockHashes, parentHashOf } from "./block-hash.ts";
import { BlockPool } from "./block-pool.ts";
import type { Request } from "./request.ts";

export interface KVCacheConfig {
  numBlocks: number;
  blockSize: number;
  enablePrefixCaching: boolean;
}

/** A prefix-cache hit: the cached blocks of a request's leading full blocks, in order. */
export interface ComputedBlocks {
  blockIds: number[];
  numTokens: number;
}

export class KVCacheManager {
  readonly pool: BlockPool;
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;
  /** Prompt-plus-output tokens looked up in the prefix cache on admission, and those that hit. */
  prefixCacheQueries = 0;
  prefixCacheHits = 0;
  private readonly hitScratch: number[] = [];

  constructor(cfg: KVCacheConfig) {
    this.pool = new BlockPool(cfg.numBlocks, cfg.blockSize);
    this.blockSize = cfg.blockSize;
    this.enablePrefixCaching = cfg.enablePrefixCaching;
  }

  get numBlocks(): number {
    return this.pool.numBlocks;
  }

  get numFreeBlocks(): number {
    return this.pool.numFreeBlocks;
  }

  /** Fraction of blocks held by requests; cached blocks nobody holds count as free. */
  get usage(): number {
    return 1 - this.pool.numFreeBlocks / this.pool.numBlocks;
  }

  /**
   * The longest chain of cached full blocks at the start of the request's sequence. Never the
   * whole sequence: the last token is always left to compute, so the step yields its logits.
   * Does not take references; pass `numTokens` to allocateSlots() to claim the blocks.
   */
  getComputedBlocks(req: Request): ComputedBlocks {
    const blockIds: number[] = [];
    if (!this.enablePrefixCaching) return { blockIds, numTokens: 0 };
    const maxBlocks = Math.floor((req.numTokens - 1) / this.blockSize);
    for (let i = 0; i < maxBlocks; i++) {
      extendBlockHashes(req.blockHashes, req, this.blockSize, i + 1);
      const id = this.lookupBlock(req, i);
      if (id < 0) break;
      blockIds.push(id);
    }
    return { blockIds, numTokens: blockIds.length * this.blockSize };
  }

  /**
   * Gives the request slots for `numNewTokens` more tokens after its computed ones (and after
   * `numComputedHit` prefix-cache tokens, which must come from getComputedBlocks() on a request
   * holding no blocks). Returns false, changing nothing, when the free blocks do not suffice.
   */
  allocateSlots(req: Request, numNewTokens: number, numComputedHit = 0): boolean {
    this.checkAllocateArgs(req, numNewTokens, numComputedHit);
    const hits = this.hitScratch;
    hits.length = 0;
    let numFreeHits = 0;
    for (let i = 0; i < numComputedHit / this.blockSize; i++) {
      const id = this.lookupBlock(req, i);
      if (id < 0) throw new Error(`allocateSlots: prefix-cache hit for ${req.id} is stale`);
      if (this.pool.refCount(id) === 0) numFreeHits++;
      hits.push(id);
    }
    const numTokensAfter = req.numComputedTokens + numComputedHit + numNewTokens;
    const numNeeded =
      Math.ceil(numTokensAfter / this.blockSize) - req.blockIds.length - hits.length;
    // Hit blocks sitting in the free queue stop being free once touched.
    if (numNeeded > this.pool.numFreeBlocks - numFreeHits) return false;
    if (this.enablePrefixCaching && req.blockIds.length === 0) {
      this.prefixCacheQueries += req.numTokens;
      this.prefixCacheHits += numComputedHit;
    }
    for (const id of hits) {
      this.pool.touch(id);
      req.blockIds.push(id);
    }
    if (numNeeded > 0) this.pool.allocate(numNeeded, req.blockIds);
    return true;
  }

  /**
   * Registers in the prefix cache the blocks that became full by the step that computed the
   * request's tokens [start, end) (their KV now exists; their ids are known). Each block is
   * hashed once.
   */
  cacheComputedBlocks(req: Request, start: number, end: number): void {
    if (!this.enablePrefixCaching) return;
    const firstBlock = Math.floor(start / this.blockSize);
    const endBlock = Math.floor(end / this.blockSize);
    if (endBlock <= firstBlock) return;
    extendBlockHashes(req.blockHashes, req, this.blockSize, endBlock);
    for (let i = firstBlock; i < endBlock; i++) {
      const id = req.blockIds[i];
      if (id === undefined) throw new Error(`cacheComputedBlocks: ${req.id} has no block ${i}`);
      const hashes = req.blockHashes;
      this.pool.cache(id, blockHashAt(hashes, i), parentHashOf(hashes, i), req, i * this.blockSize);
    }
  }

  /** Releases the request's blocks, tail first so that its last blocks are evicted first. */
  free(req: Request): void {
    const ids = req.blockIds;
    for (let i = ids.length - 1; i >= 0; i--) this.pool.release(ids[i]!);
    ids.length = 0;
  }

  /** Forgets all cached content (e.g. after loading new weights). */
  resetPrefixCache(): void {
    this.pool.resetPrefixCache();
  }

  private lookupBlock(req: Request, i: number): number {
    const hashes = req.blockHashes;
    if (i >= hashes.length) return -1;
    return this.pool.lookup(blockHashAt(hashes, i), parentHashOf(hashes, i), req, i * this.blockSize);
  }

  private checkAllocateArgs(req: Request, numNewTokens: number, numComputedHit: number): void {
    if (!Number.isInteger(numNewTokens) || numNewTokens < 1) {
      throw new Error(`allocateSlots: numNewTokens must be a positive integer, got ${numNewTokens}`);
    }
    if (!Number.isInteger(numComputedHit) || numComputedHit < 0 || numComputedHit % this.blockSize) {
      throw new Error(
        `allocateSlots: numComputedHit must be a non-negative multiple of ${this.blockSize}, got ${numComputedHit}`,
      );
    }
    if (numComputedHit > 0 && (req.blockIds.length > 0 || req.numComputedTokens > 0)) {
      throw new Error(`allocateSlots: a prefix-cache hit applies only to a request holding no blocks`);
    }
    if (req.numComputedTokens + numComputedHit + numNewTokens > req.numTokensWithPending) {
      throw new Error(
        `allocateSlots: ${req.id} has ${req.numTokensWithPending} tokens, asked for slots up to ` +
          `${req.numComputedTokens + numComputedHit + numNewTokens}`,
      );
    }
  }
}
