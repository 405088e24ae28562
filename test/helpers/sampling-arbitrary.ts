// Random values for the sampling fields both front ends accept (fast-check), for property tests:
// mostly numbers, edge floats around float32's range among them, and few fields per body, so that
// bodies often pass every other field's check and reach the mapping.
import fc from "fast-check";
import { samplingParamsSchema } from "../../src/protocol/messages.ts";

const EDGE_NUMBERS = [0, -0, 1, -1, 2, 100, 101, -101, 0.5, 3.4e38, 3.4028235e38, 3.5e38, 1e39, 1e-38, 1e-44, 1.4e-45, 1e-46,
  2 ** 31 - 1, 2 ** 31, 2 ** 53, 2 ** 64, -(2 ** 63), Number.MAX_VALUE, Number.MIN_VALUE];
const number = fc.oneof(fc.constantFrom(...EDGE_NUMBERS), fc.double(), fc.integer({ min: -5, max: 200 }));
const smallList = <T>(a: fc.Arbitrary<T>) => fc.array(a, { maxLength: 4 });
const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: number, weight: 12 }, fc.constant(null), fc.boolean(), fc.string({ maxLength: 8 }), smallList(number), smallList(fc.string({ maxLength: 3 })),
  fc.array(fc.integer({ min: 0, max: 150 }), { minLength: 1000, maxLength: 1100 }),
  fc.dictionary(fc.oneof(fc.string({ maxLength: 3 }), fc.integer({ min: 0, max: 120 }).map(String)), number, { maxKeys: 4 }),
  fc.bigInt({ min: -(2n ** 65n), max: 2n ** 65n }),
);

/** The msgpack params' field names (the HTTP API has each of them too). */
export const SAMPLING_FIELDS = Object.keys(samplingParamsSchema.shape);

/** A map of up to 3 sampling fields with random values (bigints, NaN and infinities included: msgpack carries them). */
export const samplingBody = fc.dictionary(fc.constantFrom(...SAMPLING_FIELDS), anyValue, { maxKeys: 3 });

/** The body as JSON carries it: bigints as numbers, NaN and infinities as null. */
export const asJson = (b: object): Record<string, unknown> => JSON.parse(JSON.stringify(b, (_k, v) => (typeof v === "bigint" ? Number(v) : v)));
