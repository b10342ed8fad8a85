export { PreviewClient } from "./client.js";
export { PreviewApiError } from "./errors.js";
export { PreviewConnection } from "./connection.js";
export { Emitter } from "./emitter.js";
export { AppetizeEmbed, appetizeEmbedUrl, stageOfMessage, DEFAULT_APPETIZE_EMBED_URL } from "./appetize.js";
