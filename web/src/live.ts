// A server stream kept open: when it fails or ends it is opened again after a backoff, and it
// can be restarted on purpose (a sequence gap: a new subscription brings fresh snapshots). The
// state drives the banner that says when live data is down.

export type LiveState = "connecting" | "live" | "down";

/** Waits between reconnects: `first`, doubling up to `maximum`. */
export function backoffDelay(failures: number, first = 500, maximum = 10_000): number {
  if (failures <= 0) return 0;
  return Math.min(first * 2 ** Math.min(failures - 1, 20), maximum);
}

export interface LiveOptions<T> {
  name: string;
  /** Opens the stream; it must stop when the signal aborts, and call `connected` when the
   * server's headers arrive (a quiet stream may send no message for minutes). */
  open: (signal: AbortSignal, connected: () => void) => AsyncIterable<T>;
  onMessage: (message: T) => void;
  onState: (state: LiveState, error?: unknown) => void;
  /** Called before each (re)open, e.g. to clear state that the new stream's snapshot replaces. */
  onOpen?: () => void;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  delay?: (failures: number) => number;
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}

export class LiveStream<T> {
  private readonly options: LiveOptions<T>;
  private stopped = false;
  private current: AbortController | undefined;
  private wake: AbortController | undefined;
  /** How many times the stream was (re)opened; for tests and the status line. */
  opens = 0;
  /** Failed opens since the last one that got through: while above 0, live data is down. */
  failures = 0;
  state: LiveState = "connecting";

  constructor(options: LiveOptions<T>) {
    this.options = options;
  }

  /** Runs until stop(); resolves then. */
  async run(): Promise<void> {
    const sleep = this.options.sleep ?? abortableSleep;
    const delay = this.options.delay ?? backoffDelay;
    while (!this.stopped) {
      const controller = new AbortController();
      this.current = controller;
      this.opens++;
      this.options.onOpen?.();
      this.setState("connecting");
      let error: unknown;
      const connected = () => {
        if (controller.signal.aborted || this.state === "live") return;
        this.failures = 0;
        this.setState("live");
      };
      try {
        for await (const message of this.options.open(controller.signal, connected)) {
          if (controller.signal.aborted) break;
          connected();
          this.options.onMessage(message);
          // A restart or stop from inside onMessage: do not wait for the next message.
          if (controller.signal.aborted) break;
        }
      } catch (caught) {
        error = caught;
      }
      if (this.stopped) break;
      if (controller.signal.aborted) continue; // restart(): at once, no backoff
      this.failures++;
      this.setState("down", error);
      this.wake = new AbortController();
      await sleep(delay(this.failures), this.wake.signal);
    }
  }

  /** Closes the current stream and opens a new one at once. */
  restart(): void {
    this.current?.abort();
    this.wake?.abort();
  }

  stop(): void {
    this.stopped = true;
    this.restart();
  }

  private setState(state: LiveState, error?: unknown): void {
    this.state = state;
    this.options.onState(state, error);
  }
}
