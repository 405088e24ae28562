import { describe, expect, test } from "bun:test";
import type { TokenSource } from "./block-hash.ts";
import { BlockPool } from "./block-pool.ts";

const tokens = (ts: number[]): TokenSource => ({ tokenAt: (i) => ts[i]! });

describe("BlockPool free queue (LRU)", () => {
  // Each row: operations from a fresh pool of 6 blocks, then the expected free queue.
  const rows: [string, (p: BlockPool, held: number[]) => void, number[]][] = [
    ["fresh pool is in id order", () => {}, [0, 1, 2, 3, 4, 5]],
    ["allocation takes from the head", (p, h) => p.allocate(2, h), [2, 3, 4, 5]],
    [
      "freed blocks go to the tail in release order",
      (p, h) => {
        p.allocate(3, h);
        p.release(1);
        p.release(0);
      },
      [3, 4, 5, 1, 0],
    ],
    [
      "blocks freed earlier are reused first",
      (p, h) => {
        p.allocate(6, h);
        p.release(4);
        p.release(2);
        h.length = 0;
        p.allocate(1, h);
      },
      [2],
    ],
    [
      "a shared block is freed by its last holder only",
      (p, h) => {
        p.allocate(1, h);
        p.touch(0);
        p.release(0);
      },
      [1, 2, 3, 4, 5],
    ],
    [
      "touching a free block takes it out of the middle of the queue",
      (p) => p.touch(3),
      [0, 1, 2, 4, 5],
    ],
  ];
  test.each(rows)("%s", (_name, ops, expected) => {
    const pool = new BlockPool(6, 2);
    ops(pool, []);
    expect(pool.freeQueue()).toEqual(expected);
    expect(pool.numFreeBlocks).toBe(expected.length);
  });

  test("allocate appends ids with ref count 1", () => {
    const pool = new BlockPool(4, 2);
    const out = [9];
    pool.allocate(2, out);
    expect(out).toEqual([9, 0, 1]);
    expect([pool.refCount(0), pool.refCount(1), pool.refCount(2)]).toEqual([1, 1, 0]);
  });
});

describe("BlockPool prefix cache", () => {
  const content = tokens([7, 8, 9, 10]);

  test("a cached block stays hit-able after release until it is reallocated", () => {
    const pool = new BlockPool(2, 2);
    const held: number[] = [];
    pool.allocate(1, held);
    expect(pool.cache(0, 100, 1, content, 0)).toBe(true);
    pool.release(0);
    expect(pool.lookup(100, 1, content, 0)).toBe(0);
    expect(pool.isCached(0)).toBe(true);
    pool.allocate(1, held); // takes block 1, the head: block 0 keeps its content
    expect(pool.lookup(100, 1, content, 0)).toBe(0);
    pool.allocate(1, held); // now block 0 is reused for new content
    expect(pool.lookup(100, 1, content, 0)).toBe(-1);
    expect(pool.isCached(0)).toBe(false);
    expect(pool.numCachedBlocks).toBe(0);
  });

  test.each([
    ["matching hash, parent and tokens", 100, 1, 0, 0],
    ["unknown hash", 101, 1, 0, -1],
    ["other parent hash", 100, 2, 0, -1],
    ["other tokens under the same hash", 100, 1, 2, -1],
  ])("lookup with %s", (_name, hash, parent, start, expected) => {
    const pool = new BlockPool(2, 2);
    pool.allocate(1, []);
    pool.cache(0, 100, 1, content, 0);
    expect(pool.lookup(hash, parent, content, start)).toBe(expected);
  });

  test("a hash already cached by another block is not cached twice", () => {
    const pool = new BlockPool(3, 2);
    pool.allocate(2, []);
    expect(pool.cache(0, 100, 1, content, 0)).toBe(true);
    expect(pool.cache(1, 100, 1, content, 0)).toBe(false);
    expect(pool.cache(0, 200, 1, content, 2)).toBe(false);
    expect(pool.isCached(1)).toBe(false);
    expect(pool.lookup(100, 1, content, 0)).toBe(0);
  });

  test("resetPrefixCache forgets hashes but keeps references", () => {
    const pool = new BlockPool(2, 2);
    pool.allocate(1, []);
    pool.cache(0, 100, 1, content, 0);
    pool.resetPrefixCache();
    expect(pool.lookup(100, 1, content, 0)).toBe(-1);
    expect(pool.refCount(0)).toBe(1);
    expect(pool.numCachedBlocks).toBe(0);
  });
});

describe("BlockPool errors", () => {
  test.each([
    ["zero blocks", () => new BlockPool(0, 2), /numBlocks/],
    ["fractional block size", () => new BlockPool(2, 1.5), /blockSize/],
    ["allocating more than free", () => new BlockPool(2, 2).allocate(3, []), /only 2 free/],
    ["releasing a free block", () => new BlockPool(2, 2).release(0), /released while free/],
    ["an id out of range", () => new BlockPool(2, 2).touch(2), /out of range/],
    ["caching a free block", () => new BlockPool(2, 2).cache(0, 1, 0, content(), 0), /free block/],
  ])("%s throws", (_name, fn, message) => {
    expect(fn).toThrow(message);
  });
});

function content(): TokenSource {
  return tokens([1, 2]);
}
