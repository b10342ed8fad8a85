// Binary files in the client (docs/protocol.md, "Binary files"), on a fake socket: run by
// tests/integration/test_client_epochs.py with Node. Bytes go out as base64 with
// `encoding: "base64"`, bad input is refused before anything is queued, and a binary file
// stays binary in the mirror that is re-sent after a store reset. Exits non-zero on failure.
import assert from "node:assert/strict";
import { open, welcome } from "./fake_connection.mjs";

// Every byte value, and more than one slice of the encoder (0x8000 bytes).
const bytes = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256);
const base64 = Buffer.from(bytes).toString("base64");
const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAHnOcQAAAAABJRU5ErkJggg==";

// Bytes (Uint8Array or ArrayBuffer) and explicit base64 go out as base64; text as before.
{
  const { connection, socket, receive } = await open();
  receive(welcome("e1", 0));
  connection.send([
    { path: "a.png", content: bytes },
    { path: "b.bin", content: bytes.buffer },
    { path: "c.png", content: PNG, encoding: "base64" },
    { path: "d.txt", content: "text" },
  ]);
  assert.deepEqual(socket.sent.at(-1).changes, [
    { path: "a.png", content: base64, encoding: "base64" },
    { path: "b.bin", content: base64, encoding: "base64" },
    { path: "c.png", content: PNG, encoding: "base64" },
    { path: "d.txt", content: "text" },
  ]);
  // An empty file is a binary file too.
  receive({ type: "ack", seq: 1 });
  connection.send([{ path: "empty.bin", content: new Uint8Array(0) }]);
  assert.deepEqual(socket.sent.at(-1).changes, [{ path: "empty.bin", content: "", encoding: "base64" }]);
  connection.close();
}

// Malformed binary changes are refused at once; nothing is queued or sent.
{
  const { connection, socket, receive } = await open();
  receive(welcome("e1", 0));
  const sent = socket.sent.length;
  for (const change of [
    { path: "a.png", content: "QQ=", encoding: "base64" }, // padding missing
    { path: "a.png", content: "QQ==\n", encoding: "base64" }, // whitespace
    { path: "a.png", content: "Q Q==", encoding: "base64" },
    { path: "a.png", content: "QQ==QQ==", encoding: "base64" }, // padding inside
    { path: "a.png", content: "-_8=", encoding: "base64" }, // base64url
    { path: "a.png", content: "QQ==", encoding: "hex" },
    { path: "a.png", content: "QQ==", encoding: "BASE64" },
    { path: "a.png", delete: true, encoding: "base64" },
    { path: "a.png", content: [1, 2, 3] },
  ]) {
    assert.throws(() => connection.send([change]), TypeError, JSON.stringify(change));
  }
  assert.equal(connection.pendingCount, 0);
  assert.equal(socket.sent.length, sent);
  connection.close();
}

// Received binary files keep their encoding: in patch events, in snapshots (`binary`), and in
// the mirror that is re-sent under a new epoch.
{
  const { connection, events, socket, receive } = await open();
  receive(welcome("e1", 0));
  receive({ type: "patch", seq: 1, changes: [{ path: "p.png", content: PNG, encoding: "base64" }] });
  const [, patch] = events.find(([name]) => name === "patch");
  assert.deepEqual(patch.changes, [{ path: "p.png", content: PNG, encoding: "base64" }]);
  connection.send([{ path: "mine.png", content: bytes }]); // pending when the snapshot comes
  receive({ type: "hello" }); // ignored
  receive({
    type: "snapshot",
    seq: 3,
    files: { "p.png": PNG, "logo.txt": PNG, "font.woff2": "d09GMgABAAA=" },
    deleted: ["index.html"],
    binary: ["p.png", "font.woff2", "not-a-file.png"],
  });
  const [, snapshot] = events.find(([name]) => name === "snapshot");
  assert.deepEqual(snapshot.binary, ["p.png", "font.woff2"]); // only paths of `files`
  assert.equal(connection.pendingCount, 1); // not shown by the snapshot: still pending
  receive(welcome("e2", 0));
  const resync = events.find(([name]) => name === "resync");
  assert.equal(resync[1].files, 5);
  const resent = socket.sent.filter((f) => f.type === "patch" && f.epoch === "e2").flatMap((f) => f.changes);
  assert.deepEqual(
    resent.sort((a, b) => a.path.localeCompare(b.path)),
    [
      { path: "font.woff2", content: "d09GMgABAAA=", encoding: "base64" },
      { path: "index.html", delete: true },
      { path: "logo.txt", content: PNG }, // same characters, but text: not in `binary`
      { path: "mine.png", content: base64, encoding: "base64" }, // was pending: in the mirror
      { path: "p.png", content: PNG, encoding: "base64" },
    ],
  );
  connection.close();
}

// A pending binary patch that a snapshot shows (same base64, listed in `binary`) was appended.
{
  const { connection, events, receive } = await open();
  receive(welcome("e1", 0));
  connection.send([{ path: "x.png", content: PNG, encoding: "base64" }]);
  connection.send([{ path: "y.png", content: PNG, encoding: "base64" }]);
  receive({ type: "snapshot", seq: 2, files: { "x.png": PNG, "y.png": PNG }, deleted: [], binary: ["x.png"] });
  // x.png is shown as binary: acknowledged; y.png has the same characters as text: not shown.
  assert.deepEqual(
    events.filter(([name]) => name === "ack").map(([, e]) => e.seq),
    [1],
  );
  assert.equal(connection.pendingCount, 1);
  connection.close();
}

// Two binary files at the 512 KiB cap are re-sent one per frame, each under the 1 MiB cap.
{
  const { connection, socket, receive } = await open();
  receive(welcome("e1", 0));
  const big = new Uint8Array(512 * 1024).fill(255);
  connection.send([{ path: "a.bin", content: big }]);
  receive({ type: "ack", seq: 1 });
  connection.send([{ path: "b.bin", content: big }]);
  receive({ type: "ack", seq: 2 });
  receive(welcome("e2", 0));
  const first = socket.sent.at(-1);
  assert.deepEqual(first.changes.map((c) => [c.path, c.encoding, c.content.length]), [["a.bin", "base64", 699_052]]);
  assert.ok(JSON.stringify(first).length < 1024 * 1024);
  connection.close();
}

console.log("ok");
