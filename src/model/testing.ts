// For the model loader's tests: runs `fn` and returns the ModelDirError it throws.
import { ModelDirError } from "./errors.ts";

export function errorOf(fn: () => unknown): ModelDirError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ModelDirError) return e;
    throw e;
  }
  throw new Error("expected a ModelDirError, nothing was thrown");
}
