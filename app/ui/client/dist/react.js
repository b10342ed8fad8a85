import { jsx as _jsx } from "react/jsx-runtime";
/** A thin React wrapper around <preview-panel>. */
import { forwardRef, useEffect, useImperativeHandle, useRef, } from "react";
import { PreviewPanel as PreviewPanelElement } from "./panel.js";
export { PreviewPanelElement };
export const PreviewPanel = forwardRef(function PreviewPanel(props, ref) {
    const elementRef = useRef(null);
    const latest = useRef(props);
    latest.current = props;
    useImperativeHandle(ref, () => ({
        get element() {
            return elementRef.current;
        },
        sendChanges: (changes) => elementRef.current?.sendChanges(changes) ?? null,
        writeFile: (path, content) => elementRef.current?.writeFile(path, content) ?? null,
        deleteFile: (path) => elementRef.current?.deleteFile(path) ?? null,
        start: () => elementRef.current?.start() ?? Promise.resolve(null),
        end: () => elementRef.current?.end() ?? Promise.resolve(),
        reload: () => elementRef.current?.reload(),
    }), []);
    useEffect(() => {
        const el = elementRef.current;
        if (!el)
            return;
        // A stable function that always calls the latest prop.
        el.getAccessToken = () => latest.current.getAccessToken();
        const subscriptions = [
            ["preview-status", (e) => latest.current.onStatus?.(e.detail)],
            ["preview-applied", (e) => latest.current.onApplied?.(e.detail)],
            ["preview-build-error", (e) => latest.current.onBuildError?.(e.detail)],
            ["preview-log", (e) => latest.current.onLog?.(e.detail)],
            ["preview-ended", (e) => latest.current.onEnded?.(e.detail)],
            ["preview-error", (e) => latest.current.onError?.(e.detail)],
            ["preview-session", (e) => latest.current.onSession?.(e.detail.session)],
        ];
        for (const [type, handler] of subscriptions)
            el.addEventListener(type, handler);
        return () => {
            for (const [type, handler] of subscriptions)
                el.removeEventListener(type, handler);
        };
    }, []);
    const { projectId, device, template, api, sideBySide, autostart, fallback, className, style, id, children } = props;
    return (_jsx("preview-panel", { ref: elementRef, id: id, className: className, style: style, "project-id": projectId, device: device, template: template, api: api, devices: sideBySide && sideBySide.length > 0 ? sideBySide.join(" ") : undefined, autostart: autostart === false ? "false" : undefined, fallback: fallback ? true : undefined, children: children }));
});
export default PreviewPanel;
