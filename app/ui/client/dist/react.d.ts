/** A thin React wrapper around <preview-panel>. */
import { type CSSProperties, type ReactNode } from "react";
import { PreviewPanel as PreviewPanelElement, type PanelStatusDetail } from "./panel.js";
import type { AccessTokenProvider } from "./client.js";
import type { BuildErrorEvent, EndedEvent, ErrorEvent, FileChange, LogEvent, SeqEvent, Session } from "./types.js";
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
    namespace JSX {
        interface IntrinsicElements {
            "preview-panel": import("react").DetailedHTMLProps<import("react").HTMLAttributes<PreviewPanelElement>, PreviewPanelElement> & PanelAttributes;
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
export declare const PreviewPanel: import("react").ForwardRefExoticComponent<PreviewPanelProps & import("react").RefAttributes<PreviewPanelHandle>>;
export default PreviewPanel;
