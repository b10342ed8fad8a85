/** A small typed event emitter. */
export type Listener<T> = (detail: T) => void;
export declare class Emitter<M extends object> {
    #private;
    /** Subscribe; returns a function that unsubscribes. */
    on<K extends keyof M>(type: K, listener: Listener<M[K]>): () => void;
    off<K extends keyof M>(type: K, listener: Listener<M[K]>): void;
    once<K extends keyof M>(type: K, listener: Listener<M[K]>): () => void;
    protected emit<K extends keyof M>(type: K, detail: M[K]): void;
    protected removeAllListeners(): void;
}
