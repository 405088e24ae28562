// Talks to `vllmd serve --socket PATH` (or --msgpack-port N) over the msgpack protocol:
// streams one completion to the terminal, then runs a few more at once on the same connection.
//
//   ./vllmd serve --socket /tmp/vllmd.sock &
//   bun examples/msgpack-client.ts /tmp/vllmd.sock "Once upon a time"
//   bun examples/msgpack-client.ts 9000 "Once upon a time"        # a TCP port on 127.0.0.1
import { connect, ProtocolError } from "../src/protocol/client.ts";

const [target = "/tmp/vllmd.sock", prompt = "Once upon a time"] = process.argv.slice(2);
const client = await connect(/^\d+$/.test(target) ? Number(target) : target);
console.log(`connected: model ${client.server.model}, max_model_len ${client.server.max_model_len}`);

// 1. Stream: one frame per engine step, each with the new token ids and text.
const stream = client.generate({ prompt, params: { max_tokens: 32, temperature: 0.8, top_p: 0.95, seed: 1 } });
for await (const frame of stream) {
  process.stdout.write(frame.text ?? "");
  if (frame.finished) console.log(`\n[${frame.finish_reason}] ${JSON.stringify(frame.usage)}`);
}

// 2. Concurrent: many requests share the connection; each promise resolves to the whole result.
const results = await Promise.all(
  [1, 2, 3].map((seed) => client.generate({ prompt, params: { max_tokens: 16, seed }, stream: false })),
);
for (const r of results) console.log(`#${r.id}: ${JSON.stringify(r.text)} (${r.usage.completion_tokens} tokens)`);

// 3. Abort: stop a long generation after its first frame; it ends with finish_reason "abort".
const long = client.generate({ prompt, params: { max_tokens: 200, ignore_eos: true } });
for await (const frame of long) {
  if (!frame.finished) long.abort();
  else console.log(`aborted after ${frame.usage?.completion_tokens} tokens: ${frame.finish_reason}`);
}

// 4. Errors name the field; the connection stays usable.
try {
  await client.generate({ prompt, params: { temperature: -1 }, stream: false });
} catch (e) {
  if (!(e instanceof ProtocolError)) throw e;
  console.log(`error ${e.code}: ${e.message}`);
}

await client.close();
