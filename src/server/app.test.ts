import { describe, expect, test } from "bun:test";
import { bearerMatches } from "./app.ts";

describe("bearerMatches", () => {
  test("accepts only the exact key as a Bearer token", () => {
    expect(bearerMatches("Bearer sekret", "sekret")).toBe(true);
    expect(bearerMatches("bearer   sekret ", "sekret")).toBe(true);
    expect(bearerMatches("Bearer sekret2", "sekret")).toBe(false);
    expect(bearerMatches("Basic sekret", "sekret")).toBe(false);
    expect(bearerMatches("sekret", "sekret")).toBe(false);
    expect(bearerMatches(undefined, "sekret")).toBe(false);
  });
});
