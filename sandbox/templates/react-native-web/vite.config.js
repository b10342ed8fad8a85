// Dev-server settings of a React Native (web) preview machine. A warm machine boots before it
// knows its session, so nothing here may depend on the session id or the browser's host name.
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'
import preview from './preview-plugin.js'

const root = fileURLToPath(new URL('.', import.meta.url))
// node_modules is a symlink to the template's shared install; Vite serves files by real path.
const sharedModules = realpathSync(fileURLToPath(new URL('./node_modules', import.meta.url)))
const development = process.env.NODE_ENV !== 'production'

export default defineConfig({
  base: '/',
  plugins: [react(), preview()],
  resolve: {
    alias: { 'react-native': 'react-native-web' },
    // Platform files first, as Metro resolves them for the web.
    extensions: [
      '.web.tsx', '.web.ts', '.web.jsx', '.web.js',
      '.mjs', '.js', '.mts', '.ts', '.jsx', '.tsx', '.json',
    ],
  },
  define: {
    __DEV__: JSON.stringify(development),
    'process.env.NODE_ENV': JSON.stringify(development ? 'development' : 'production'),
  },
  optimizeDeps: {
    // Pre-bundled at boot, so the first page load does not trigger a re-optimisation reload.
    include: ['react-native', 'react', 'react-dom/client', 'react/jsx-dev-runtime'],
  },
  // Inside the workspace: machines share node_modules but never Vite's pre-bundled deps.
  cacheDir: '.vite',
  server: {
    host: '127.0.0.1',
    strictPort: true,
    // The orchestrator proxies per-session hosts to this machine; which one is not known yet.
    allowedHosts: true,
    fs: { allow: [root, sharedModules] },
    // No `hmr`/`ws` settings: the client connects back to the page's own origin and port,
    // which the orchestrator proxies to this server.
  },
})
