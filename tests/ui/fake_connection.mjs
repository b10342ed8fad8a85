// A PreviewConnection (the compiled client) on a fake socket, for the client's Node tests
// (tests/ui/connection_*.mjs): `receive` feeds it server frames, `socket.sent` holds what it
// sent, `events` what it emitted.
import { PreviewConnection } from "../../app/ui/client/dist/connection.js";

class FakeSocket {
  static last = null;
  constructor(url) {
    this.url = url;
    this.readyState = 1;
    this.sent = [];
    FakeSocket.last = this;
    setTimeout(() => this.onopen?.(), 0);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {}
}

const client = { heartbeat: async () => {}, refreshToken: async () => ({}), endSession: async () => {} };
const hour = 3600e3;
const session = {
  id: "s1",
  token: "t",
  tokenExpiresAt: new Date(Date.now() + hour).toISOString(),
  expiresAt: new Date(Date.now() + 2 * hour).toISOString(),
  wsUrl: "ws://x/ws",
  previewOrigin: "http://p",
};

export async function open() {
  const connection = new PreviewConnection(client, session, {
    WebSocket: FakeSocket,
    endOnPageHide: false,
    heartbeatIntervalMs: 1e9,
  });
  const events = [];
  for (const name of ["patch", "snapshot", "resync", "ack"]) connection.on(name, (e) => events.push([name, e]));
  await new Promise((resolve) => setTimeout(resolve, 10));
  const socket = FakeSocket.last;
  const receive = (frame) => socket.onmessage({ data: JSON.stringify({ v: 1, ...frame }) });
  return { connection, events, socket, receive };
}

export const welcome = (epoch, head) => ({ type: "welcome", sessionId: "s1", epoch, head, applied: 0, state: "ready" });
