// For the model loader's tests: runs `fn` and returns the ModelDirError it throws.
import { thrownBy } from "../testing/thrown.ts";
import { ModelDirError } from "./errors.ts";

export const errorOf = (fn: () => unknown): ModelDirError => thrownBy(ModelDirError, fn);
