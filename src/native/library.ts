// Finds libvllmd_<name>.so on disk. A compiled binary embeds no .so that dlopen could use
// (DESIGN.md), so libraries ship next to the binary; in a checkout they are built into build/.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

export type BackendName = "cpu" | "cuda" | "hip";

export const libraryFileName = (name: BackendName): string => `libvllmd_${name}.so`;

/**
 * Directories searched, in order: $VLLMD_LIB_DIR, the directory of the running executable (a
 * compiled vllmd), <repo>/build (relative to this source file), and the working directory.
 */
export function librarySearchDirs(env: Record<string, string | undefined> = process.env): string[] {
  const dirs: string[] = [];
  const fromEnv = env.VLLMD_LIB_DIR;
  if (fromEnv) dirs.push(resolve(fromEnv));
  dirs.push(dirname(process.execPath));
  dirs.push(resolve(import.meta.dir, "..", "..", "build"));
  dirs.push(process.cwd());
  return [...new Set(dirs)];
}

/** The path of libvllmd_<name>.so, or an Error that lists every place it looked. */
export function findLibrary(name: BackendName, dirs: string[] = librarySearchDirs()): string {
  const file = libraryFileName(name);
  for (const dir of dirs) {
    const path = join(dir, file);
    if (existsSync(path)) return path;
  }
  const hint = name === "cpu" ? "run `make cpu`" : `run \`make ${name}\``;
  throw new Error(`${file} not found (${hint}, or set VLLMD_LIB_DIR); looked in:\n  ${dirs.join("\n  ")}`);
}
