export { PreviewClient } from "./client.js";
export { PreviewApiError } from "./errors.js";
export type { AccessTokenProvider, PreviewClientOptions, RequestOptions, WaitActiveOptions } from "./client.js";
export { PreviewConnection } from "./connection.js";
export type { ConnectionOptions } from "./connection.js";
export { Emitter } from "./emitter.js";
export type { Listener } from "./emitter.js";
export type * from "./types.js";
