/** The shadow DOM stylesheet and markup of <preview-panel>. */

export const PANEL_STYLE = `
:host {
  display: flex;
  flex-direction: column;
  position: relative;
  min-height: 320px;
  height: 100%;
  box-sizing: border-box;
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #0f172a;
  background: #e2e8f0;
  overflow: hidden;
}
:host([hidden]) { display: none; }
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
.visually-hidden {
  position: absolute !important; width: 1px; height: 1px; margin: -1px; padding: 0;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0;
}
button, select, a, .log { font: inherit; }
button {
  display: inline-flex; align-items: center; gap: 6px;
  min-height: 32px; padding: 4px 10px;
  border: 1px solid #64748b; border-radius: 6px;
  background: #ffffff; color: #0f172a; cursor: pointer;
}
button:hover { background: #f1f5f9; }
button[aria-pressed="true"], button[aria-expanded="true"] { background: #1e3a8a; border-color: #1e3a8a; color: #ffffff; }
button:disabled { cursor: not-allowed; color: #475569; background: #f1f5f9; border-color: #94a3b8; }
button.primary { background: #1d4ed8; border-color: #1d4ed8; color: #ffffff; }
button.primary:hover { background: #1e40af; }
:focus-visible { outline: 3px solid #2563eb; outline-offset: 2px; }
button:focus-visible, select:focus-visible, a:focus-visible { box-shadow: 0 0 0 5px #ffffff; }
.icon { font-size: 15px; line-height: 1; }

.bar {
  display: flex; flex-wrap: wrap; align-items: center; gap: 8px;
  padding: 8px 10px; background: #f8fafc; border-bottom: 1px solid #cbd5e1;
}
.controls { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; margin-left: auto; }
.picker { display: inline-flex; align-items: center; gap: 6px; font-weight: 600; }
select {
  min-height: 32px; padding: 4px 8px; border: 1px solid #64748b; border-radius: 6px;
  background: #ffffff; color: #0f172a; max-width: 14em;
}
.status {
  display: inline-flex; align-items: center; gap: 8px; padding: 4px 10px;
  border-radius: 999px; background: #e2e8f0; font-weight: 600; white-space: nowrap;
}
.dot { width: 10px; height: 10px; border-radius: 50%; background: #64748b; flex: none; }
:host([state="booting"]) .dot, :host([state="initializing"]) .dot { background: #b45309; animation: pulse 1.2s ease-in-out infinite; }
:host([state="ready"]) .dot { background: #15803d; }
:host([state="updating"]) .dot { background: #1d4ed8; animation: pulse 0.8s ease-in-out infinite; }
:host([state="error"]) .dot { background: #b91c1c; }
:host([state="offline"]) .dot, :host([state="ended"]) .dot { background: #475569; }
@keyframes pulse { 50% { opacity: 0.35; } }
@media (prefers-reduced-motion: reduce) { .dot { animation: none !important; } }

.banner {
  display: flex; flex-wrap: wrap; align-items: center; gap: 10px;
  padding: 8px 12px; background: #fef3c7; color: #78350f; border-bottom: 1px solid #f59e0b;
}
.main { position: relative; flex: 1 1 auto; min-height: 0; display: flex; flex-direction: column; }
.stage { position: relative; flex: 1 1 auto; min-height: 0; padding: 16px; overflow: hidden; }
.frames {
  position: relative; width: 100%; height: 100%;
  display: flex; align-items: center; justify-content: center; gap: 16px;
}
.slot { position: relative; flex: none; }
.caption {
  position: absolute; left: 0; right: 0; bottom: -22px; text-align: center;
  font-size: 12px; color: #334155; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
}
.device {
  position: absolute; top: 0; left: 0; transform-origin: 0 0;
  display: flex; flex-direction: column; background: #111827;
  box-shadow: 0 10px 30px rgb(15 23 42 / 0.25);
}
.device[data-frame="phone"] { padding: 14px; border-radius: 44px; }
.device[data-frame="tablet"] { padding: 20px; border-radius: 30px; }
.device[data-frame="desktop"] { padding: 0; border-radius: 10px; background: #d1d5db; border: 1px solid #9ca3af; }
.notch { display: none; }
.device[data-frame="phone"] .notch {
  display: block; position: absolute; top: 18px; left: 50%; width: 90px; height: 22px; margin-left: -45px;
  border-radius: 12px; background: #111827; z-index: 1; pointer-events: none;
}
.device[data-frame="phone"][data-orientation="landscape"] .notch { top: 50%; left: 18px; width: 22px; height: 90px; margin: -45px 0 0; }
.browserbar { display: none; }
.device[data-frame="desktop"] .browserbar {
  display: flex; align-items: center; gap: 6px; height: 34px; padding: 0 10px; flex: none;
}
.browserbar i { width: 11px; height: 11px; border-radius: 50%; background: #9ca3af; display: block; }
.browserbar i:nth-child(1) { background: #ef4444; }
.browserbar i:nth-child(2) { background: #f59e0b; }
.browserbar i:nth-child(3) { background: #22c55e; }
.browserbar span {
  flex: 1; margin-left: 10px; padding: 2px 10px; border-radius: 6px; background: #ffffff; color: #374151;
  font-size: 12px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis;
}
.screen { position: relative; background: #ffffff; overflow: hidden; flex: none; }
.device[data-frame="phone"] .screen { border-radius: 32px; }
.device[data-frame="tablet"] .screen { border-radius: 12px; }
.device[data-frame="desktop"] .screen { border-radius: 0 0 9px 9px; }
.screen iframe { display: block; width: 100%; height: 100%; border: 0; background: #ffffff; }

.overlay {
  position: absolute; inset: 0; display: flex; align-items: center; justify-content: center;
  padding: 24px; background: rgb(15 23 42 / 0.45); z-index: 5;
}
.card {
  max-width: min(560px, 100%); max-height: 100%; overflow: auto; padding: 18px 20px;
  border-radius: 10px; background: #ffffff; color: #0f172a; box-shadow: 0 12px 40px rgb(15 23 42 / 0.35);
}
.card h2 { margin: 0 0 8px; font-size: 16px; }
.build-error .card { border-left: 6px solid #b91c1c; }
.build-error h2 { color: #991b1b; }
.build-error pre {
  margin: 8px 0 12px; padding: 10px; max-height: 40vh; overflow: auto; white-space: pre-wrap;
  background: #fef2f2; color: #7f1d1d; border-radius: 6px; font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, monospace;
}
.be-loc { margin: 0; font-weight: 600; color: #334155; }
.ended-view p, .starting p { margin: 0 0 12px; }
.reason { color: #334155; font-size: 13px; }
.starting { background: rgb(226 232 240 / 0.85); }

.cookie-frames { position: absolute; width: 0; height: 0; overflow: hidden; }
.cookie-frames iframe { width: 0; height: 0; border: 0; }
.fallback { flex: 1 1 auto; padding: 16px; overflow: auto; background: #f8fafc; }
.fallback .appetize { display: block; width: 100%; height: 100%; min-height: 480px; border: 0; margin: 0 0 12px; background: #fff; }
.fallback-error { margin: 0 0 12px; padding: 10px 12px; border-radius: 6px; background: #fef2f2; color: #991b1b; }

.console {
  display: flex; flex-direction: column; flex: none; height: 34%; min-height: 120px;
  background: #0f172a; color: #e2e8f0; border-top: 1px solid #334155;
}
.console header { display: flex; align-items: center; gap: 8px; padding: 6px 10px; border-bottom: 1px solid #334155; }
.console h2 { margin: 0; font-size: 13px; font-weight: 600; flex: 1; }
.console button { min-height: 26px; padding: 2px 8px; background: #1e293b; color: #e2e8f0; border-color: #94a3b8; }
.log {
  flex: 1; margin: 0; padding: 6px 10px; list-style: none; overflow: auto;
  font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, monospace;
}
.log li { display: flex; gap: 8px; white-space: pre-wrap; word-break: break-word; border-bottom: 1px solid #1e293b; }
.log .lvl { flex: none; width: 4.5em; text-transform: uppercase; font-size: 11px; color: #cbd5e1; }
.log .lvl-warn .lvl, .log .lvl-warn .msg { color: #fcd34d; }
.log .lvl-error .lvl, .log .lvl-error .msg { color: #fca5a5; }
.log .lvl-info .lvl { color: #93c5fd; }
.log:focus-visible { outline-offset: -3px; }

dialog {
  border: 0; border-radius: 12px; padding: 20px; max-width: min(420px, 92vw);
  color: #0f172a; background: #ffffff; box-shadow: 0 20px 50px rgb(15 23 42 / 0.4);
}
dialog::backdrop { background: rgb(15 23 42 / 0.5); }
dialog h2 { margin: 0 0 12px; font-size: 17px; }
.qr-code { width: 240px; height: 240px; margin: 0 auto 12px; }
.qr-code svg { width: 100%; height: 100%; display: block; }
.qr-hint { margin: 0 0 8px; text-align: center; font-weight: 600; }
.qr-link { display: block; word-break: break-all; color: #1d4ed8; }
.qr-appetize { display: block; margin-top: 8px; color: #1d4ed8; }
.qr-appetize[hidden] { display: none; }
.qr-expiry { color: #334155; font-size: 13px; }
.dialog-actions { display: flex; justify-content: flex-end; gap: 8px; margin-top: 12px; }
`;

export const PANEL_MARKUP = `
<div class="bar" part="toolbar">
  <div class="status" part="status"><span class="dot" aria-hidden="true"></span><span class="status-text">Initializing…</span></div>
  <div class="controls" role="toolbar" aria-label="Preview controls">
    <span class="picker"><label for="device-select">Device</label>
      <select id="device-select" class="device-select"></select></span>
    <button type="button" class="rotate" aria-pressed="false" title="Rotate (portrait / landscape)"><span class="icon" aria-hidden="true">⟲</span>Rotate</button>
    <button type="button" class="side" aria-pressed="false" title="Show several devices side by side"><span class="icon" aria-hidden="true">▥</span>Side by side</button>
    <button type="button" class="reload" title="Reload the preview"><span class="icon" aria-hidden="true">↻</span>Reload</button>
    <button type="button" class="open-tab" title="Open the preview in a new tab"><span class="icon" aria-hidden="true">↗</span>New tab</button>
    <button type="button" class="qr" title="Open the preview on a phone with a QR code" aria-haspopup="dialog"><span class="icon" aria-hidden="true">▦</span>QR code</button>
    <button type="button" class="console-toggle" aria-expanded="false" aria-controls="console"><span class="icon" aria-hidden="true">&gt;_</span>Console</button>
  </div>
</div>
<div class="banner idle-banner" role="alert" hidden>
  <span class="idle-text"></span>
  <button type="button" class="primary keep">Keep it running</button>
</div>
<div class="main">
  <div class="stage" part="stage">
    <div class="frames"></div>
    <div class="overlay starting" hidden><div class="card"><p class="starting-text">Starting the preview…</p></div></div>
    <div class="overlay build-error" role="alert" aria-labelledby="be-title" hidden>
      <div class="card">
        <h2 id="be-title">Build error</h2>
        <p class="be-loc"></p>
        <pre class="be-msg"></pre>
        <button type="button" class="be-dismiss">Dismiss</button>
      </div>
    </div>
    <div class="overlay ended-view" hidden>
      <div class="card">
        <p><strong class="ended-text">Preview ended</strong> <span class="reason"></span></p>
        <button type="button" class="primary restart">Start again</button>
      </div>
    </div>
  </div>
  <div class="fallback" part="fallback" hidden>
    <p class="fallback-error" role="alert" hidden></p>
    <slot name="fallback"></slot>
  </div>
</div>
<section class="console" id="console" aria-labelledby="console-title" hidden>
  <header><h2 id="console-title">Console</h2><button type="button" class="console-clear">Clear</button></header>
  <ol class="log" tabindex="0" aria-label="Console output"></ol>
</section>
<div class="live visually-hidden" aria-live="polite" aria-atomic="true"></div>
<div class="cookie-frames"></div>
<dialog class="qr-dialog" aria-labelledby="qr-title">
  <h2 id="qr-title">Open the preview on your phone</h2>
  <div class="qr-code" role="img" aria-label="QR code of the preview link"></div>
  <p class="qr-hint" hidden>Scan with Expo Go</p>
  <a class="qr-link" target="_blank" rel="noopener noreferrer"></a>
  <a class="qr-appetize" target="_blank" rel="noopener noreferrer" hidden>Open it in Expo Go on a cloud device (Appetize)</a>
  <p class="qr-expiry"></p>
  <div class="dialog-actions"><button type="button" class="primary qr-close">Close</button></div>
</dialog>
`;
