// The client's side of a store reset (docs/protocol.md, "Epochs"), on a fake socket: run by
// tests/integration/test_client_epochs.py with Node. Exits non-zero on the first failure.
import assert from "node:assert/strict";
import { open, welcome } from "./fake_connection.mjs";

// One tab: what it sent (acked or not) and what it received is re-sent under the new epoch.
{
  const { connection, events, socket, receive } = await open();
  receive(welcome("e1", 0));
  assert.deepEqual(socket.sent.at(-1).type, "hello");
  connection.send([{ path: "a.js", content: "1" }]);
  assert.equal(socket.sent.at(-1).epoch, "e1");
  receive({ type: "ack", seq: 1 });
  receive({ type: "patch", seq: 2, changes: [{ path: "other.js", content: "from another tab" }] });
  connection.send([{ path: "gone.js", delete: true }]); // pending when the store is lost
  receive(welcome("e2", 0));
  const resync = events.find(([name]) => name === "resync");
  assert.deepEqual(resync[1], { epoch: "e2", previousEpoch: "e1", files: 3 });
  const resent = socket.sent.at(-1);
  assert.equal(resent.seq, 1);
  assert.equal(resent.epoch, "e2");
  assert.deepEqual(resent.changes, [
    { path: "a.js", content: "1" },
    { path: "other.js", content: "from another tab" },
    { path: "gone.js", delete: true },
  ]);
  // A refusal of a patch numbered under the lost epoch drops nothing that is pending now.
  receive({ type: "error", code: "stale_epoch", seq: 1, epoch: "e1" });
  assert.equal(connection.pendingCount, 1);
  connection.close();
}

// Two tabs: the other re-sent first; for a file both hold, ours (with our unacked edit) wins,
// and the editor is not handed the other tab's older copy of it.
{
  const { connection, events, socket, receive } = await open();
  receive(welcome("e1", 0));
  connection.send([{ path: "a.js", content: "mine, newer" }]);
  receive(welcome("e2", 1));
  receive({ type: "patch", seq: 1, changes: [{ path: "a.js", content: "older" }, { path: "b.js", content: "theirs" }] });
  const handed = events.filter(([name]) => name === "patch").map(([, e]) => e.changes);
  assert.deepEqual(handed, [[{ path: "b.js", content: "theirs" }]]);
  assert.deepEqual(socket.sent.at(-1).changes, [
    { path: "a.js", content: "mine, newer" },
    { path: "b.js", content: "theirs" },
  ]);
  assert.equal(socket.sent.at(-1).seq, 2);
  connection.close();
}

// Re-sent files are chunked by their JSON length: a frame stays far below 1 MiB even for
// content that escaping makes six times longer.
{
  const { connection, socket, receive } = await open();
  receive(welcome("e1", 0));
  const control = "\u0001".repeat(100_000); // 600 KB of JSON
  connection.send([{ path: "a.bin", content: control }]);
  receive({ type: "ack", seq: 1 });
  connection.send([{ path: "b.bin", content: control }]);
  receive({ type: "ack", seq: 2 });
  receive(welcome("e2", 0));
  const first = socket.sent.at(-1);
  assert.equal(first.changes.length, 1);
  assert.ok(JSON.stringify(first).length < 1024 * 1024);
  connection.close();
}

console.log("ok");
