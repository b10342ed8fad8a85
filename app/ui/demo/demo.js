// @ts-check
// The demo editor: a file tree, a CodeMirror 6 editor and a <preview-panel>, served by
// `preview-orchestrator dev` at `/`. Bare specifiers resolve through the page's import map.
import { EditorView, basicSetup } from "codemirror";
import { EditorState, Annotation } from "@codemirror/state";
import { javascript } from "@codemirror/lang-javascript";
import { HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { tags } from "@lezer/highlight";
import "/ui/client/panel.js";

/** The demo project: a small React 19 app (the react-web template's index.html loads /src/main.jsx). */
const INITIAL_FILES = {
  "src/App.jsx": `import Counter from './Counter.jsx'

export default function App() {
  return (
    <main className="app">
      <h1 id="title">Hello from the live preview</h1>
      <p>Edit <code>src/App.jsx</code> and watch this page update as you type.</p>
      <Counter />
    </main>
  )
}
`,
  "src/main.jsx": `import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import './styles.css'
import App from './App.jsx'

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <App />
  </StrictMode>,
)
`,
  "src/Counter.jsx": `import { useState } from 'react'

export default function Counter() {
  const [count, setCount] = useState(0)
  return (
    <button id="counter" type="button" onClick={() => setCount((c) => c + 1)}>
      count is {count}
    </button>
  )
}
`,
  "src/styles.css": `:root {
  font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif;
  color: #0f172a;
  background: #f8fafc;
}

body {
  margin: 0;
}

.app {
  max-width: 40rem;
  margin: 0 auto;
  padding: 3rem 1.5rem;
  text-align: center;
}

#counter {
  padding: 0.6rem 1.2rem;
  border: 0;
  border-radius: 8px;
  background: #1d4ed8;
  color: #ffffff;
  font-size: 1rem;
  cursor: pointer;
}
`,
};

const DEBOUNCE_MS = 150;

/** @type {Record<string, string>} the editor's files (path → content), kept current */
const files = { ...INITIAL_FILES };
/** @type {Map<string, EditorState>} one editor state per file (keeps undo history) */
const states = new Map();
/** Marks transactions that come from the session (another tab, a snapshot): not sent back. */
const remote = Annotation.define();

const panel = /** @type {import("../client/dist/panel.js").PreviewPanel} */ (document.getElementById("panel"));
const tree = /** @type {HTMLElement} */ (document.getElementById("file-tree"));
const openFileLabel = /** @type {HTMLElement} */ (document.getElementById("open-file"));
const latencyOut = /** @type {HTMLOutputElement} */ (document.getElementById("applied-latency"));
const saveState = /** @type {HTMLElement} */ (document.getElementById("save-state"));
const sessionInfo = /** @type {HTMLElement} */ (document.getElementById("session-info"));
const previewState = /** @type {HTMLElement} */ (document.getElementById("preview-state"));

let openPath = "src/App.jsx";
/** @type {Set<string>} files changed in the editor and not sent yet */
const dirty = new Set();
/** @type {ReturnType<typeof setTimeout> | undefined} */
let debounceTimer;
let initialSent = false;

// ---- editor --------------------------------------------------------------------------

const highlight = HighlightStyle.define([
  { tag: tags.keyword, color: "#7c1fa8" },
  { tag: [tags.name, tags.deleted, tags.character, tags.macroName], color: "#0f172a" },
  { tag: [tags.function(tags.variableName), tags.labelName], color: "#1d4ed8" },
  { tag: [tags.propertyName], color: "#0e5a8a" },
  { tag: [tags.tagName, tags.typeName, tags.className], color: "#a1262f" },
  { tag: [tags.attributeName], color: "#8a4b00" },
  { tag: [tags.string, tags.special(tags.string), tags.regexp], color: "#1b6b1b" },
  { tag: [tags.number, tags.bool, tags.null, tags.atom], color: "#0b5f6b" },
  { tag: [tags.comment, tags.lineComment, tags.blockComment], color: "#57606a", fontStyle: "italic" },
  { tag: [tags.operator, tags.punctuation, tags.bracket, tags.angleBracket], color: "#334155" },
  { tag: tags.invalid, color: "#b91c1c" },
]);

const theme = EditorView.theme({
  "&": { backgroundColor: "#ffffff", color: "#0f172a" },
  ".cm-content": { caretColor: "#0f172a" },
  ".cm-gutters": { backgroundColor: "#f8fafc", color: "#475569", borderRight: "1px solid #e2e8f0" },
  ".cm-activeLineGutter": { backgroundColor: "#e2e8f0", color: "#0f172a" },
  ".cm-activeLine": { backgroundColor: "#f1f5f9" },
  "&.cm-focused": { outline: "none" },
  "&.cm-focused .cm-content": { boxShadow: "inset 3px 0 0 #2563eb" },
});

/** @param {string} path */
function createState(path) {
  const isScript = /\.(jsx?|tsx?|mjs)$/.test(path);
  return EditorState.create({
    doc: files[path] ?? "",
    extensions: [
      basicSetup,
      isScript ? javascript({ jsx: true, typescript: path.endsWith(".tsx") || path.endsWith(".ts") }) : [],
      syntaxHighlighting(highlight),
      theme,
      EditorView.contentAttributes.of({ "aria-label": `Code editor: ${path}`, tabindex: "0" }),
      EditorView.updateListener.of((update) => {
        if (!update.docChanged) return;
        const text = update.state.doc.toString();
        files[path] = text;
        if (update.transactions.some((tr) => tr.annotation(remote))) return;
        markDirty(path);
      }),
    ],
  });
}

/** @param {string} path */
function stateFor(path) {
  let state = states.get(path);
  if (!state) {
    state = createState(path);
    states.set(path, state);
  }
  return state;
}

const view = new EditorView({
  state: stateFor(openPath),
  parent: /** @type {HTMLElement} */ (document.getElementById("editor")),
});

/** @param {string} path */
function openFile(path) {
  if (!(path in files)) return;
  states.set(openPath, view.state);
  openPath = path;
  view.setState(stateFor(path));
  openFileLabel.textContent = path;
  renderTree();
}

/** Replaces a file's text in its editor state (without sending it when `fromSession`). */
function replaceText(/** @type {string} */ path, /** @type {string} */ content, fromSession = false) {
  const annotations = fromSession ? [remote.of(true)] : [];
  if (path === openPath) {
    if (view.state.doc.toString() !== content) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: content }, annotations });
    }
    return;
  }
  const state = stateFor(path);
  if (state.doc.toString() !== content) {
    const tr = state.update({ changes: { from: 0, to: state.doc.length, insert: content }, annotations });
    states.set(path, tr.state);
    files[path] = content; // the listener only runs for the view's own state
    if (!fromSession) markDirty(path);
  }
}

// ---- sending patches -----------------------------------------------------------------

/** @param {string} path */
function markDirty(path) {
  dirty.add(path);
  saveState.textContent = "Unsaved changes…";
  renderTree();
  clearTimeout(debounceTimer);
  debounceTimer = setTimeout(flush, DEBOUNCE_MS);
}

/** Sends every changed file now; returns the patch's seq (null when nothing was sent). */
function flush() {
  clearTimeout(debounceTimer);
  if (dirty.size === 0 || !initialSent) return null;
  const changes = [...dirty].map((path) => ({ path, content: files[path] ?? "" }));
  dirty.clear();
  const seq = panel.sendChanges(changes);
  saveState.textContent = seq === null ? "Waiting for the preview…" : "Sending…";
  renderTree();
  return seq;
}

function sendAllFiles() {
  initialSent = true;
  dirty.clear();
  clearTimeout(debounceTimer);
  const changes = Object.entries(files).map(([path, content]) => ({ path, content }));
  saveState.textContent = "Uploading the project…";
  renderTree();
  return panel.sendChanges(changes);
}

/**
 * For tests: replaces a file's content in the editor (as if typed) and sends the patch now.
 * @param {string} path
 * @param {string} content
 */
function setFile(path, content) {
  if (!(path in files)) {
    files[path] = "";
    renderTree();
  }
  if (path !== openPath) openFile(path);
  replaceText(path, content);
  return flush();
}

// ---- changes from the session -------------------------------------------------------

/** @param {{path: string, content?: string, delete?: boolean}[]} changes */
function applyRemote(changes) {
  for (const change of changes) {
    if (change.delete) {
      if (change.path in INITIAL_FILES || change.path in files) {
        delete files[change.path];
        states.delete(change.path);
      }
      continue;
    }
    if (!change.path.startsWith("src/")) continue; // the tree shows the project's src/ only
    if (!(change.path in files)) files[change.path] = "";
    replaceText(change.path, change.content ?? "", true);
  }
  if (!(openPath in files)) openFile(Object.keys(files)[0] ?? "src/App.jsx");
  renderTree();
}

// ---- file tree -----------------------------------------------------------------------

function renderTree() {
  const items = Object.keys(files)
    .sort()
    .map((path) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.file = path;
      button.dataset.testid = `file-${path}`;
      if (path === openPath) button.setAttribute("aria-current", "true");
      const ext = document.createElement("span");
      ext.className = "ext";
      ext.setAttribute("aria-hidden", "true");
      ext.textContent = (path.split(".").pop() ?? "").toUpperCase();
      const name = document.createElement("span");
      name.textContent = path.replace(/^src\//, "");
      button.append(ext, name);
      if (dirty.has(path)) {
        const mark = document.createElement("span");
        mark.className = "dirty";
        mark.textContent = "●";
        mark.setAttribute("aria-label", "unsaved");
        mark.setAttribute("role", "img");
        button.append(mark);
      }
      button.addEventListener("click", () => openFile(path));
      li.append(button);
      return li;
    });
  tree.replaceChildren(...items);
}

// ---- the panel -----------------------------------------------------------------------

panel.addEventListener("preview-session", (event) => {
  initialSent = false;
  const { session } = event.detail;
  sessionInfo.textContent = `Session ${session.id.slice(0, 8)} · ${session.template} · ${session.region}`;
});
panel.addEventListener("preview-welcome", (event) => {
  if (initialSent) return;
  if (event.detail.head === 0) {
    sendAllFiles();
  } else {
    // The session already has edits (another tab): its patches/snapshot update our files.
    initialSent = true;
    flush();
  }
});
panel.addEventListener("preview-ack", () => {
  if (dirty.size === 0) saveState.textContent = "Saved";
});
panel.addEventListener("preview-applied", (event) => {
  const { latencyMs } = event.detail;
  if (latencyMs !== null) latencyOut.textContent = `applied in ${latencyMs} ms`;
});
panel.addEventListener("preview-status", (event) => {
  previewState.textContent = `Preview: ${event.detail.state}`;
});
panel.addEventListener("preview-patch", (event) => applyRemote(event.detail.changes));
panel.addEventListener("preview-snapshot", (event) => {
  const { files: snapshotFiles, deleted } = event.detail;
  applyRemote([
    ...Object.entries(snapshotFiles).map(([path, content]) => ({ path, content })),
    ...deleted.map((path) => ({ path, delete: true })),
  ]);
});
panel.addEventListener("preview-ended", (event) => {
  sessionInfo.textContent = `Session ended (${event.detail.reason})`;
});

// ---- sign in (dev mode) ----------------------------------------------------------------

/** @type {{token: string, at: number} | null} */
let cached = null;
/** @type {string | null} */
let projectId = null;

async function devToken() {
  const response = await fetch("/api/dev/token", { method: "POST" });
  if (!response.ok) throw new Error(`dev login failed (HTTP ${response.status})`);
  const body = await response.json();
  cached = { token: body.accessToken, at: Date.now() };
  projectId = body.projectId;
  return body;
}

/** The access token for the panel (a real editor returns its Supabase session's access token). */
async function getAccessToken() {
  if (!cached || Date.now() - cached.at > 10 * 60_000) await devToken();
  return /** @type {{token: string}} */ (cached).token;
}

renderTree();

// @ts-ignore -- exposed for tests and for poking around in the console
window.demo = { panel, setFile, files, view, openFile, flush };

try {
  await devToken();
  sessionInfo.textContent = "Starting a preview session…";
  panel.setAttribute("project-id", /** @type {string} */ (projectId));
  panel.getAccessToken = getAccessToken;
} catch (err) {
  sessionInfo.textContent = `Could not sign in: ${err instanceof Error ? err.message : String(err)}`;
  panel.fallback = true;
}
