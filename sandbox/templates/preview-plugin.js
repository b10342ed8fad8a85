// The preview machine's hooks into Vite, shared by every template (each template links to this
// file; the sandbox agent copies it into the workspace). The agent reads Vite's stdout and
// listens on Vite's HMR socket, so the plugin only has to:
//   - inject a bridge into the page that forwards console output and uncaught errors over the
//     HMR socket, and print each message as one marked JSON line on stdout; the bridge also
//     reports the page's first render to the preview origin (POST /__preview/render);
//   - announce every file change the dev server has taken in (`preview:change`), so the agent can
//     acknowledge patches that touch no module of the page yet;
//   - keep the agent's own state directory out of the watcher and away from the browser;
//   - serve library code (pre-bundled dependencies, Vite's client) without source maps.
const CONSOLE_MARK = '@@preview:console '
const BRIDGE_ID = 'virtual:preview-bridge'
const RESOLVED_BRIDGE_ID = '\0' + BRIDGE_ID
const AGENT_STATE_DIR = '.preview-agent'
const MAX_MESSAGE = 4000

const bridgeSource = `
const hot = import.meta.hot
const MAX_MESSAGE = ${MAX_MESSAGE}
function describe(value) {
  if (typeof value === 'string') return value
  if (value instanceof Error) return value.stack || String(value)
  try { return JSON.stringify(value) ?? String(value) } catch { return String(value) }
}
// While the HMR socket is down, hot.send fails asynchronously and Vite's client logs that with
// console.error, which would come back here: a loop that floods the page until it reconnects.
let connected = true
function forward(level, args) {
  if (!connected) return
  if (args.some((arg) => arg instanceof Error && arg.name === 'SendBeforeConnectError')) return
  const message = args.map(describe).join(' ').slice(0, MAX_MESSAGE)
  // Vite's own client chatter ("[vite] hot updated ...") would echo every edit back.
  if (level === 'debug' && message.startsWith('[vite]')) return
  try { hot.send('preview:console', { level, message }) } catch {}
}
if (hot) {
  hot.on('vite:ws:disconnect', () => { connected = false })
  hot.on('vite:ws:connect', () => { connected = true })
  for (const level of ['debug', 'log', 'info', 'warn', 'error']) {
    const original = console[level].bind(console)
    console[level] = (...args) => { original(...args); forward(level, args) }
  }
  window.addEventListener('error', (event) => {
    forward('error', [event.error ?? event.message])
  })
  window.addEventListener('unhandledrejection', (event) => {
    forward('error', ['Unhandled rejection:', event.reason])
  })
}
// The session's first render, reported once per page to the preview origin, which records
// only the first report of the session (app/preview_render.py): once the app's root has
// children, after the frame that shows them has been painted (a task queued from the
// animation frame runs after that frame's paint).
function reportFirstRender() {
  const root = document.getElementById('root') || document.body
  const report = () => requestAnimationFrame(() => setTimeout(() => {
    const body = JSON.stringify({ sinceNavigationMs: Math.round(performance.now()) })
    fetch('/__preview/render', {
      method: 'POST',
      body,
      keepalive: true,
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
    }).catch(() => {})
  }, 0))
  if (root.childElementCount > 0) return report()
  const observer = new MutationObserver(() => {
    if (root.childElementCount === 0) return
    observer.disconnect()
    report()
  })
  observer.observe(root, { childList: true })
}
if (!window.__previewRenderReported) {
  window.__previewRenderReported = true
  reportFirstRender()
}
`

// Pre-bundled dependencies, other packages, virtual modules (this plugin's bridge; Vite's and
// the React plugin's `/@…` runtimes): none of it is the user's code.
function isLibraryModule(environment, id) {
  return (
    Boolean(environment.depsOptimizer?.isOptimizedDepFile(id)) ||
    id.includes('/node_modules/') ||
    id.startsWith('/@') ||
    id.startsWith('\0')
  )
}

export default function previewPlugin() {
  return {
    name: 'preview-agent',
    apply: 'serve',
    config() {
      return {
        server: {
          watch: { ignored: [`**/${AGENT_STATE_DIR}/**`] },
          fs: { deny: ['.env', '.env.*', '*.{crt,pem}', '**/.git/**', `**/${AGENT_STATE_DIR}/**`] },
        },
      }
    },
    resolveId(id) {
      return id === BRIDGE_ID ? RESOLVED_BRIDGE_ID : undefined
    },
    load(id) {
      return id === RESOLVED_BRIDGE_ID ? bridgeSource : undefined
    },
    transformIndexHtml() {
      return [
        { tag: 'script', attrs: { type: 'module', src: `/@id/${BRIDGE_ID}` }, injectTo: 'head-prepend' },
      ]
    },
    configureServer(server) {
      server.ws.on('preview:console', (data) => {
        process.stdout.write(CONSOLE_MARK + JSON.stringify(data) + '\n')
      })
    },
    // Vite inlines a module's source map into every response, base64-encoded per request. For
    // react-dom's pre-bundled build that turns 0.9 MB of code into 3.1 MB on the wire; Vite's
    // client and the React refresh runtime get generated maps five times their size. Every
    // first load pays for that in the machine's front, the local proxy and most of all the
    // browser. Library code is readable without a map (the pre-bundles are plain concatenated
    // source with path comments), so only the user's own modules keep theirs.
    transform(code, id) {
      if (!isLibraryModule(this.environment, id)) return undefined
      // `mappings: ''` is Rollup's "no map" and sticks through later transforms. Vite keeps the
      // loaded map of a module whose code no transform changed: the newline makes this count.
      return { code: code + '\n', map: { mappings: '' } }
    },
    // Before the framework's own hook: when that one throws (plugin-vue parses the SFC's
    // <script> there), Vite skips the hooks after it, and the change is taken in all the same.
    hotUpdate: {
      order: 'pre',
      handler({ file, type }) {
        if (this.environment.name === 'client') {
          this.environment.hot.send('preview:change', { file, type })
        }
      },
    },
  }
}
