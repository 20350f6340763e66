/**
 * Calls run one at a time, in the order they were made: a model session (and the scratch buffers
 * beside it) serves one call at a time. A failed call does not block the ones after it.
 */
export class SerialCalls {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const call = this.tail.then(fn);
    this.tail = call.catch(() => undefined);
    return call;
  }

  /** Resolves once every call made so far has settled. */
  async idle(): Promise<void> {
    await this.tail;
  }
}
