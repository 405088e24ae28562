import { describe, expect, test } from "bun:test";
import {
  BlockHashTable,
  blockHashAt,
  extendBlockHashes,
  hashBlock,
  parentHashOf,
  ROOT_BLOCK_HASH,
  type TokenSource,
} from "./block-hash.ts";

const seq = (tokens: number[]): TokenSource & { reads: number } => {
  const src = {
    reads: 0,
    tokenAt(i: number): number {
      src.reads++;
      return tokens[i]!;
    },
  };
  return src;
};

describe("hashBlock", () => {
  const base = [11, 22, 33, 44];
  test.each([
    ["last token differs", [11, 22, 33, 45]],
    ["first token differs", [12, 22, 33, 44]],
    ["tokens swapped", [22, 11, 33, 44]],
    ["token 0 vs 2^31-1", [11, 22, 33, 0x7fffffff]],
  ])("%s gives another hash", (_name, other) => {
    expect(hashBlock(ROOT_BLOCK_HASH, seq(other), 0, 4)).not.toBe(hashBlock(ROOT_BLOCK_HASH, seq(base), 0, 4));
  });

  test("is a function of parent and tokens only", () => {
    const shifted = seq([9, 9, ...base]);
    expect(hashBlock(5, shifted, 2, 4)).toBe(hashBlock(5, seq(base), 0, 4));
    expect(hashBlock(5, seq(base), 0, 4)).not.toBe(hashBlock(6, seq(base), 0, 4));
    // Parents differing only in the high lane must differ too.
    expect(hashBlock(5 + 2 ** 40, seq(base), 0, 4)).not.toBe(hashBlock(5, seq(base), 0, 4));
  });

  test("is a safe integer with no collisions over 20k random blocks", () => {
    let state = 12345;
    const rand = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) >>> 16) % 50;
    const hashes = new Set<number>();
    const contents = new Set<string>();
    for (let i = 0; i < 20000; i++) {
      const block = Array.from({ length: 4 }, rand);
      const h = hashBlock(ROOT_BLOCK_HASH, seq(block), 0, 4);
      expect(Number.isSafeInteger(h) && h >= 0).toBe(true);
      hashes.add(h);
      contents.add(block.join(","));
    }
    expect(contents.size).toBeGreaterThan(19000);
    expect(hashes.size).toBe(contents.size);
  });
});

describe("extendBlockHashes", () => {
  test("chains hashes and computes only the missing tail", () => {
    const src = seq([1, 2, 3, 4, 5, 6, 7]);
    const hashes: number[] = [];
    extendBlockHashes(hashes, src, 2, 2);
    expect(src.reads).toBe(4);
    extendBlockHashes(hashes, src, 2, 3);
    expect(src.reads).toBe(6);
    expect(hashes.length).toBe(3);
    expect(blockHashAt(hashes, 0)).toBe(hashBlock(ROOT_BLOCK_HASH, seq([1, 2]), 0, 2));
    expect(blockHashAt(hashes, 2)).toBe(hashBlock(blockHashAt(hashes, 1), seq([5, 6]), 0, 2));
    expect(parentHashOf(hashes, 2)).toBe(blockHashAt(hashes, 1));
    expect(parentHashOf(hashes, 0)).toBe(ROOT_BLOCK_HASH);
  });

  test("same block content under different prefixes hashes differently", () => {
    const a: number[] = [];
    const b: number[] = [];
    extendBlockHashes(a, seq([1, 2, 7, 8]), 2, 2);
    extendBlockHashes(b, seq([3, 4, 7, 8]), 2, 2);
    expect(a[1]).not.toBe(b[1]);
  });
});

describe("BlockHashTable", () => {
  test("insert, get and remove", () => {
    const t = new BlockHashTable(4);
    const a = 5 + 2 ** 32; // same home slot as b
    const b = 5 + 2 * 2 ** 32;
    expect(t.insert(a, 0)).toBe(true);
    expect(t.insert(a, 1)).toBe(false); // key present: no change
    expect(t.insert(b, 1)).toBe(true);
    expect([t.get(a), t.get(b), t.get(5), t.size]).toEqual([0, 1, -1, 2]);
    t.remove(a, 7); // maps to another id: kept
    expect(t.get(a)).toBe(0);
    t.remove(a, 0);
    expect([t.get(a), t.get(b), t.size]).toEqual([-1, 1, 1]);
  });

  // Keys crowd a few home slots (and wrap around the end) so removal must shift probe runs.
  test.each([
    ["crowded home slots", 8, (r: () => number) => (r() % 4) + 12 + (r() % 3) * 2 ** 32],
    ["spread keys", 64, (r: () => number) => r() + (r() % 1000) * 2 ** 32],
  ])("matches a Map under random churn: %s", (_name, maxEntries, key) => {
    let state = 7;
    const rand = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) >>> 8;
    const table = new BlockHashTable(maxEntries);
    const oracle = new Map<number, number>();
    for (let op = 0; op < 5000; op++) {
      const k = key(rand);
      if (oracle.has(k) && rand() % 2 === 0) {
        table.remove(k, oracle.get(k)!);
        oracle.delete(k);
      } else if (!oracle.has(k) && oracle.size < maxEntries) {
        expect(table.insert(k, op)).toBe(true);
        oracle.set(k, op);
      }
      expect(table.get(k)).toBe(oracle.get(k) ?? -1);
      expect(table.size).toBe(oracle.size);
    }
    for (const [k, id] of oracle) expect(table.get(k)).toBe(id);
  });

  test("refuses more entries than it was sized for", () => {
    const t = new BlockHashTable(1);
    for (let i = 0; i < 8; i++) t.insert(i, i);
    expect(() => t.insert(99, 99)).toThrow(/over capacity/);
  });
});
