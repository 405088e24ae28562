// The multi-host rendezvous on localhost: nodes of one process stand in for hosts.
import { describe, expect, test } from "bun:test";
import { joinRendezvous, type RendezvousOptions, serveRendezvous } from "./rendezvous.ts";

const ID = Uint8Array.from({ length: 128 }, (_, i) => (i * 37) & 255); // NCCL's unique id is 128 bytes

/** Node 0 on a free port: its promise, its port, and a way to start the other nodes. */
async function startNode0(nnodes: number, timeoutMs = 3000) {
  let port = 0;
  const o: RendezvousOptions = { nnodes, nodeRank: 0, masterAddr: "127.0.0.1", masterPort: 0, timeoutMs, onListening: (p) => { port = p; } };
  const done = serveRendezvous(o, ID); // onListening runs before it returns
  done.catch(() => {}); // a test that expects the rejection awaits it itself
  const node = (nodeRank: number, over: Partial<RendezvousOptions> = {}) =>
    joinRendezvous({ nnodes, nodeRank, masterAddr: "127.0.0.1", masterPort: port, timeoutMs: 2000, ...over });
  return { done, node, port };
}

describe("rendezvous", () => {
  test("three nodes: node 0 hands the same 128 bytes to nodes 1 and 2, then returns", async () => {
    const { done, node } = await startNode0(3);
    const got = await Promise.all([node(2), node(1)]);
    await done;
    for (const g of got) expect(g).toEqual(ID);
  });

  test("a node that starts before node 0 keeps trying until it listens", async () => {
    const probe = await startNode0(2); // learn a free port, then free it
    await probe.node(1);
    await probe.done;
    const early = joinRendezvous({ nnodes: 2, nodeRank: 1, masterAddr: "127.0.0.1", masterPort: probe.port, timeoutMs: 3000 });
    await Bun.sleep(300);
    const late = serveRendezvous({ nnodes: 2, nodeRank: 0, masterAddr: "127.0.0.1", masterPort: probe.port, timeoutMs: 3000 }, ID);
    expect(await early).toEqual(ID);
    await late;
  });

  test("a node with another --nnodes, a rank out of range or a rank taken is refused by name", async () => {
    const { done, node } = await startNode0(3);
    await expect(node(1, { nnodes: 4 })).rejects.toThrow("this node says --nnodes 4, node 0 says 3");
    await expect(node(5, {})).rejects.toThrow("--node-rank 5 is not in 1..2");
    await node(1);
    await expect(node(1)).rejects.toThrow("--node-rank 1 already joined");
    await node(2);
    await done;
  });

  test("node 0 gives up after its timeout, naming the nodes that never came", async () => {
    const { done, node } = await startNode0(3, 1500);
    await node(2);
    await expect(done).rejects.toThrow("node(s) 1 of --nnodes 3 did not reach 127.0.0.1:");
  });

  test("a node that never reaches node 0 says where it looked", async () => {
    const probe = await startNode0(2);
    await probe.node(1);
    await probe.done; // that port is free again: nobody listens there now
    await expect(joinRendezvous({ nnodes: 2, nodeRank: 1, masterAddr: "127.0.0.1", masterPort: probe.port, timeoutMs: 300 }))
      .rejects.toThrow(`node 1 could not reach node 0 at 127.0.0.1:${probe.port} within 0.3 s`);
  });
});
