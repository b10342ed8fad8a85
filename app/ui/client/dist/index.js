export { PreviewClient } from "./client.js";
export { PreviewApiError } from "./errors.js";
export { PreviewConnection } from "./connection.js";
export { Emitter } from "./emitter.js";
