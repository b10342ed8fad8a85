// Dev-server settings of a preview machine. A warm machine boots before it knows its session,
// so nothing here may depend on the session id or the host name the browser uses.
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import vue from '@vitejs/plugin-vue'
import { defineConfig } from 'vite'
import preview from './preview-plugin.js'

const root = fileURLToPath(new URL('.', import.meta.url))
// node_modules is a symlink to the template's shared install; Vite serves files by real path.
const sharedModules = realpathSync(fileURLToPath(new URL('./node_modules', import.meta.url)))

export default defineConfig({
  base: '/',
  plugins: [vue(), preview()],
  optimizeDeps: {
    // Pre-bundled at boot, so the first page load does not trigger a re-optimisation reload.
    include: ['vue'],
  },
  // Inside the workspace: machines share node_modules but never Vite's pre-bundled deps.
  cacheDir: '.vite',
  server: {
    host: '127.0.0.1',
    strictPort: true,
    // The orchestrator proxies *.preview hosts to this machine; which one is not known yet.
    allowedHosts: true,
    fs: { allow: [root, sharedModules] },
    // No `hmr`/`ws` settings: the client connects back to the page's own origin and port,
    // which the orchestrator proxies to this server.
  },
})
