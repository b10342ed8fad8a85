/** A small typed event emitter. */

export type Listener<T> = (detail: T) => void;

export class Emitter<M extends object> {
  #listeners = new Map<keyof M, Set<Listener<unknown>>>();

  /** Subscribe; returns a function that unsubscribes. */
  on<K extends keyof M>(type: K, listener: Listener<M[K]>): () => void {
    let set = this.#listeners.get(type);
    if (!set) {
      set = new Set();
      this.#listeners.set(type, set);
    }
    set.add(listener as unknown as Listener<unknown>);
    return () => this.off(type, listener);
  }

  off<K extends keyof M>(type: K, listener: Listener<M[K]>): void {
    this.#listeners.get(type)?.delete(listener as unknown as Listener<unknown>);
  }

  once<K extends keyof M>(type: K, listener: Listener<M[K]>): () => void {
    const off = this.on(type, (detail) => {
      off();
      listener(detail);
    });
    return off;
  }

  protected emit<K extends keyof M>(type: K, detail: M[K]): void {
    const set = this.#listeners.get(type);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(detail);
      } catch (err) {
        // A listener's bug must not break the connection's bookkeeping.
        if (typeof reportError === "function") reportError(err);
        else console.error(err);
      }
    }
  }

  protected removeAllListeners(): void {
    this.#listeners.clear();
  }
}
