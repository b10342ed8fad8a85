/** A thin React wrapper around <preview-panel>. */

import {
  forwardRef,
  useEffect,
  useImperativeHandle,
  useRef,
  type CSSProperties,
  type ReactNode,
} from "react";
import { PreviewPanel as PreviewPanelElement, type PanelStatusDetail } from "./panel.js";
import type { AccessTokenProvider } from "./client.js";
import type {
  BuildErrorEvent,
  EndedEvent,
  ErrorEvent,
  FileChange,
  LogEvent,
  SeqEvent,
  Session,
} from "./types.js";

export type { PanelStatusDetail, PanelState } from "./panel.js";
export { PreviewPanelElement };

type PanelAttributes = {
  "project-id"?: string;
  api?: string;
  device?: string;
  template?: string;
  devices?: string;
  autostart?: string;
  fallback?: boolean | "";
};

declare module "react" {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace JSX {
    interface IntrinsicElements {
      "preview-panel": import("react").DetailedHTMLProps<
        import("react").HTMLAttributes<PreviewPanelElement>,
        PreviewPanelElement
      > &
        PanelAttributes;
    }
  }
}

export interface PreviewPanelProps {
  projectId: string;
  getAccessToken: AccessTokenProvider;
  device?: string;
  template?: string;
  /** The service's base URL (default: the page's origin). */
  api?: string;
  /** Device ids shown side by side. */
  sideBySide?: string[];
  /** Start when mounted (default true). */
  autostart?: boolean;
  /** Show the `fallback` slot (children with slot="fallback") instead of the preview. */
  fallback?: boolean;
  onStatus?: (detail: PanelStatusDetail) => void;
  onApplied?: (detail: SeqEvent) => void;
  onBuildError?: (detail: BuildErrorEvent) => void;
  onLog?: (detail: LogEvent) => void;
  onEnded?: (detail: EndedEvent) => void;
  onSession?: (session: Session) => void;
  onError?: (detail: ErrorEvent) => void;
  className?: string;
  style?: CSSProperties;
  id?: string;
  children?: ReactNode;
}

/** What a ref to <PreviewPanel> exposes. */
export interface PreviewPanelHandle {
  /** The <preview-panel> element (null before mount). */
  readonly element: PreviewPanelElement | null;
  sendChanges(changes: FileChange[]): number | null;
  writeFile(path: string, content: string): number | null;
  deleteFile(path: string): number | null;
  start(): Promise<Session | null>;
  end(): Promise<void>;
  reload(): void;
}

type Callbacks = Pick<
  PreviewPanelProps,
  "onStatus" | "onApplied" | "onBuildError" | "onLog" | "onEnded" | "onSession" | "onError" | "getAccessToken"
>;

export const PreviewPanel = forwardRef<PreviewPanelHandle, PreviewPanelProps>(function PreviewPanel(props, ref) {
  const elementRef = useRef<PreviewPanelElement | null>(null);
  const latest = useRef<Callbacks>(props);
  latest.current = props;

  useImperativeHandle(
    ref,
    () => ({
      get element() {
        return elementRef.current;
      },
      sendChanges: (changes) => elementRef.current?.sendChanges(changes) ?? null,
      writeFile: (path, content) => elementRef.current?.writeFile(path, content) ?? null,
      deleteFile: (path) => elementRef.current?.deleteFile(path) ?? null,
      start: () => elementRef.current?.start() ?? Promise.resolve(null),
      end: () => elementRef.current?.end() ?? Promise.resolve(),
      reload: () => elementRef.current?.reload(),
    }),
    [],
  );

  useEffect(() => {
    const el = elementRef.current;
    if (!el) return;
    // A stable function that always calls the latest prop.
    el.getAccessToken = () => latest.current.getAccessToken();
    const subscriptions: Array<[string, (event: Event) => void]> = [
      ["preview-status", (e) => latest.current.onStatus?.((e as CustomEvent<PanelStatusDetail>).detail)],
      ["preview-applied", (e) => latest.current.onApplied?.((e as CustomEvent<SeqEvent>).detail)],
      ["preview-build-error", (e) => latest.current.onBuildError?.((e as CustomEvent<BuildErrorEvent>).detail)],
      ["preview-log", (e) => latest.current.onLog?.((e as CustomEvent<LogEvent>).detail)],
      ["preview-ended", (e) => latest.current.onEnded?.((e as CustomEvent<EndedEvent>).detail)],
      ["preview-error", (e) => latest.current.onError?.((e as CustomEvent<ErrorEvent>).detail)],
      ["preview-session", (e) => latest.current.onSession?.((e as CustomEvent<{ session: Session }>).detail.session)],
    ];
    for (const [type, handler] of subscriptions) el.addEventListener(type, handler);
    return () => {
      for (const [type, handler] of subscriptions) el.removeEventListener(type, handler);
    };
  }, []);

  const { projectId, device, template, api, sideBySide, autostart, fallback, className, style, id, children } = props;
  return (
    <preview-panel
      ref={elementRef}
      id={id}
      className={className}
      style={style}
      project-id={projectId}
      device={device}
      template={template}
      api={api}
      devices={sideBySide && sideBySide.length > 0 ? sideBySide.join(" ") : undefined}
      autostart={autostart === false ? "false" : undefined}
      fallback={fallback ? true : undefined}
    >
      {children}
    </preview-panel>
  );
});

export default PreviewPanel;
