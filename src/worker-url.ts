// Where the engine Worker's entry is. Kept in src/ beside cli.ts on purpose: in a compiled binary
// every module's import.meta.url is the bundle root's, which is this folder.
export const ENGINE_WORKER_URL = new URL("./engine/worker.ts", import.meta.url).href;
export const INPUT_WORKER_URL = new URL("./serving/input-worker.ts", import.meta.url).href;
