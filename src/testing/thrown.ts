// For tests: runs fn and returns what it throws, when that is an instance of `type` (any other
// error is rethrown, and throwing nothing fails the test).
export function thrownBy<E extends Error>(type: abstract new (...args: never[]) => E, fn: () => unknown): E {
  try {
    fn();
  } catch (e) {
    if (e instanceof type) return e;
    throw e;
  }
  throw new Error(`expected a ${type.name}, nothing was thrown`);
}
