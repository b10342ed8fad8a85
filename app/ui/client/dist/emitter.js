/** A small typed event emitter. */
export class Emitter {
    #listeners = new Map();
    /** Subscribe; returns a function that unsubscribes. */
    on(type, listener) {
        let set = this.#listeners.get(type);
        if (!set) {
            set = new Set();
            this.#listeners.set(type, set);
        }
        set.add(listener);
        return () => this.off(type, listener);
    }
    off(type, listener) {
        this.#listeners.get(type)?.delete(listener);
    }
    once(type, listener) {
        const off = this.on(type, (detail) => {
            off();
            listener(detail);
        });
        return off;
    }
    emit(type, detail) {
        const set = this.#listeners.get(type);
        if (!set)
            return;
        for (const listener of [...set]) {
            try {
                listener(detail);
            }
            catch (err) {
                // A listener's bug must not break the connection's bookkeeping.
                if (typeof reportError === "function")
                    reportError(err);
                else
                    console.error(err);
            }
        }
    }
    removeAllListeners() {
        this.#listeners.clear();
    }
}
