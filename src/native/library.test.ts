// Library lookup order and its error message.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { findLibrary, librarySearchDirs } from "./library.ts";

const dir = mkdtempSync(join(tmpdir(), "vllmd-lib-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("search order: $VLLMD_LIB_DIR, the executable's directory, <repo>/build, the working directory", () => {
  const dirs = librarySearchDirs({ VLLMD_LIB_DIR: dir });
  const expected = [dir, dirname(process.execPath), resolve(import.meta.dir, "../../build"), process.cwd()];
  expect(dirs).toEqual([...new Set(expected)]);
  expect(librarySearchDirs({})[0]).toBe(dirname(process.execPath));
});

test("the first directory holding the file wins", () => {
  const empty = mkdtempSync(join(dir, "empty-"));
  writeFileSync(join(dir, "libvllmd_hip.so"), "");
  expect(findLibrary("hip", [empty, dir])).toBe(join(dir, "libvllmd_hip.so"));
});

test("a missing library names every directory searched", () => {
  const message = (() => {
    try {
      findLibrary("cuda", ["/nowhere/a", "/nowhere/b"]);
    } catch (e) {
      return String(e);
    }
    return "no error";
  })();
  expect(message).toContain("libvllmd_cuda.so not found");
  expect(message).toContain("make cuda");
  expect(message).toContain("/nowhere/a\n  /nowhere/b");
});
