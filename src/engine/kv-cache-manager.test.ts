import { describe, expect, test } from "bun:test";
import { KVCacheManager } from "./kv-cache-manager.ts";
import { defaultSamplingParams, Request } from "./request.ts";

const BS = 4;
const manager = (numBlocks: number, enablePrefixCaching = true) =>
  new KVCacheManager({ numBlocks, blockSize: BS, enablePrefixCaching });
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const request = (id: string, prompt: number[]) => new Request(id, prompt, defaultSamplingParams(), 0);

/** Allocates and "computes" a request's first n tokens (what a scheduled step plus update do). */
function compute(kv: KVCacheManager, req: Request, n: number, hit = 0): void {
  expect(kv.allocateSlots(req, n, hit)).toBe(true);
  req.numComputedTokens = hit + n;
  kv.cacheComputedBlocks(req, hit, hit + n);
}

describe("allocateSlots block counts", () => {
  // [tokens already computed, new tokens, blocks held after]
  test.each([
    [0, 1, 1],
    [0, 4, 1],
    [0, 5, 2],
    [3, 1, 1],
    [4, 1, 2],
    [5, 7, 3],
    [8, 9, 5],
  ])("computed %i + new %i -> %i blocks", (computed, numNew, blocks) => {
    const kv = manager(8, false);
    const req = request("a", range(0, 20));
    if (computed > 0) compute(kv, req, computed);
    expect(kv.allocateSlots(req, numNew)).toBe(true);
    expect(req.blockIds.length).toBe(blocks);
    expect(kv.numFreeBlocks).toBe(8 - blocks);
  });

  test("returns false and changes nothing when the blocks do not fit", () => {
    const kv = manager(3);
    const req = request("a", range(0, 20));
    compute(kv, req, 8);
    const before = [...req.blockIds];
    expect(kv.allocateSlots(req, 5)).toBe(false);
    expect(req.blockIds).toEqual(before);
    expect(kv.numFreeBlocks).toBe(1);
    expect(kv.allocateSlots(req, 4)).toBe(true);
  });

  test.each([
    ["zero new tokens", 0, 0, /numNewTokens/],
    ["a hit that is not whole blocks", 1, 3, /multiple of 4/],
    ["more tokens than the sequence has", 11, 0, /has 10 tokens/],
  ])("rejects %s", (_name, numNew, hit, message) => {
    expect(() => manager(8).allocateSlots(request("a", range(0, 10)), numNew, hit)).toThrow(message);
  });
});

describe("prefix caching", () => {
  test("a second request with the same 2-block prefix shares those blocks", () => {
    const kv = manager(16);
    const a = request("a", range(100, 10));
    compute(kv, a, 10);
    const b = request("b", [...range(100, 8), 1, 2, 3]);
    const hit = kv.getComputedBlocks(b);
    expect(hit).toEqual({ blockIds: a.blockIds.slice(0, 2), numTokens: 8 });
    compute(kv, b, 3, hit.numTokens);
    expect(b.blockIds.slice(0, 2)).toEqual(a.blockIds.slice(0, 2));
    expect(b.blockIds[2]).not.toBe(a.blockIds[2]);
    expect(b.blockIds.slice(0, 3).map((id) => kv.pool.refCount(id))).toEqual([2, 2, 1]);
    expect([kv.prefixCacheQueries, kv.prefixCacheHits]).toEqual([21, 8]);
  });

  // [prompt of the second request, expected hit tokens]: never the whole sequence.
  test.each([
    ["the whole cached 2-block prompt", range(100, 8), 4],
    ["one token past the cached blocks", range(100, 9), 8],
    ["a prompt diverging in block 1", [...range(100, 5), 0, 0, 0, 0], 4],
    ["a prompt diverging in block 0", [0, ...range(101, 8)], 0],
    ["a prompt shorter than a block", range(100, 3), 0],
  ])("%s", (_name, prompt, expected) => {
    const kv = manager(16);
    compute(kv, request("a", range(100, 12)), 12);
    expect(kv.getComputedBlocks(request("b", prompt)).numTokens).toBe(expected);
  });

  test("only full, computed blocks are cached", () => {
    const kv = manager(16);
    const a = request("a", range(100, 12));
    compute(kv, a, 7); // block 0 full, block 1 partial
    expect(kv.getComputedBlocks(request("b", range(100, 12))).numTokens).toBe(4);
    expect(kv.allocateSlots(a, 5)).toBe(true); // allocated, not yet computed
    expect(kv.getComputedBlocks(request("c", range(100, 12))).numTokens).toBe(4);
    a.numComputedTokens = 12;
    kv.cacheComputedBlocks(a, 7, 12);
    expect(kv.getComputedBlocks(request("d", range(100, 12))).numTokens).toBe(8);
  });

  test("hits on freed blocks count against the free blocks they take", () => {
    const kv = manager(3);
    const a = request("a", range(100, 8));
    compute(kv, a, 8);
    kv.free(a);
    const b = request("b", [...range(100, 4), ...range(0, 12)]);
    const hit = kv.getComputedBlocks(b);
    expect(hit.numTokens).toBe(4);
    expect(kv.allocateSlots(b, 9, 4)).toBe(false); // 1 hit + 3 new > 3 free
    expect(kv.allocateSlots(b, 8, 4)).toBe(true); // 1 hit + 2 new
    expect(kv.numFreeBlocks).toBe(0);
  });

  test("disabled: nothing is hashed or hit", () => {
    const kv = manager(16, false);
    const a = request("a", range(100, 12));
    compute(kv, a, 12);
    expect(a.blockHashes.length).toBe(0);
    expect(kv.getComputedBlocks(request("b", range(100, 12))).numTokens).toBe(0);
  });

  test("resetPrefixCache drops all hits", () => {
    const kv = manager(16);
    compute(kv, request("a", range(100, 12)), 12);
    kv.resetPrefixCache();
    expect(kv.getComputedBlocks(request("b", range(100, 12))).numTokens).toBe(0);
  });
});

describe("free and eviction order", () => {
  test("a freed request's blocks are appended tail first", () => {
    const kv = manager(6);
    const a = request("a", range(100, 12));
    compute(kv, a, 12);
    const ids = [...a.blockIds];
    kv.free(a);
    expect(a.blockIds).toEqual([]);
    expect(kv.pool.freeQueue().slice(-3)).toEqual([ids[2]!, ids[1]!, ids[0]!]);
  });

  // Requests a and b (2 cached blocks each) finish in the given order; then k fresh blocks are
  // allocated. Expected: how many leading tokens of a and of b still hit afterwards.
  test.each([
    ["a then b, 1 new block: a's tail goes", ["a", "b"], 1, [4, 8]],
    ["a then b, 2 new blocks: all of a goes", ["a", "b"], 2, [0, 8]],
    ["b then a, 1 new block: b's tail goes", ["b", "a"], 1, [8, 4]],
    ["a then b, 3 new blocks: b's tail goes too", ["a", "b"], 3, [0, 4]],
  ])("%s", (_name, order, k, expected) => {
    const kv = manager(4);
    const reqs = { a: request("a", range(100, 8)), b: request("b", range(200, 8)) };
    for (const r of Object.values(reqs)) compute(kv, r, 8);
    for (const id of order) kv.free(reqs[id as "a" | "b"]);
    kv.allocateSlots(request("c", range(0, 4 * k)), 4 * k);
    const probe = (from: number) => kv.getComputedBlocks(request("p", range(from, 9))).numTokens;
    expect([probe(100), probe(200)]).toEqual(expected);
  });

  test("usage counts held blocks only", () => {
    const kv = manager(4);
    const a = request("a", range(100, 8));
    compute(kv, a, 8);
    expect(kv.usage).toBe(0.5);
    kv.free(a);
    expect(kv.usage).toBe(0);
  });
});
