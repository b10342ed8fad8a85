// Metro settings of a preview machine. A warm machine boots before it knows its session, so
// nothing here may depend on the session id or the host name a phone or browser uses.
const { getDefaultConfig } = require('expo/metro-config');

const config = getDefaultConfig(__dirname);

// The agent's own state and temporary files, and Expo CLI's `.expo` directory, live in the
// project root; a change there is no edit of the app. Metro must not watch them: each write
// would start an HMR round that the agent would take for the confirmation of a patch.
const ignored = [/\/\.preview-agent\/.*/, /\/\.expo\/.*/];
const existing = config.resolver.blockList;
config.resolver.blockList = [
  ...(Array.isArray(existing) ? existing : existing ? [existing] : []),
  ...ignored,
];

module.exports = config;
