import { describe, expect, it } from "vitest";
import { backoffDelay, LiveStream, type LiveState } from "./live";

describe("backoffDelay", () => {
  it("doubles from the first delay up to the maximum", () => {
    expect([0, 1, 2, 3, 4, 10, 100].map((n) => backoffDelay(n, 500, 4000))).toEqual([
      0, 500, 1000, 2000, 4000, 4000, 4000,
    ]);
  });
});

/** A scripted server: each open() plays the next script, then ends or throws. */
function scripted(scripts: { messages: number[]; then: "end" | "fail" | "hang" }[]) {
  let index = 0;
  return (signal: AbortSignal, connected: () => void): AsyncIterable<number> => {
    const script = scripts[Math.min(index++, scripts.length - 1)];
    return (async function* () {
      connected();
      for (const message of script.messages) yield message;
      if (script.then === "fail") throw new Error("connection reset");
      if (script.then === "hang") {
        await new Promise<void>((resolve) => {
          if (signal.aborted) resolve();
          signal.addEventListener("abort", () => resolve());
        });
      }
    })();
  };
}

describe("LiveStream", () => {
  it("reconnects after a failure with backoff and reports its states", async () => {
    const received: number[] = [];
    const states: LiveState[] = [];
    const delays: number[] = [];
    let stream: LiveStream<number>;
    const open = scripted([
      { messages: [1, 2], then: "fail" },
      { messages: [], then: "fail" },
      { messages: [3], then: "hang" },
    ]);
    stream = new LiveStream<number>({
      name: "test",
      open: (signal, connected) => open(signal, connected),
      onMessage: (message) => {
        received.push(message);
        if (message === 3) stream.stop();
      },
      onState: (state) => states.push(state),
      delay: (failures) => failures * 10,
      sleep: async (ms) => {
        delays.push(ms);
      },
    });
    await stream.run();
    expect(received).toEqual([1, 2, 3]);
    expect(stream.opens).toBe(3);
    // The empty second stream connected (headers) before failing, so its failure counts first.
    expect(delays).toEqual([10, 10]);
    expect(states).toEqual(["connecting", "live", "down", "connecting", "live", "down", "connecting", "live"]);
  });

  it("counts failures that never connect, for the banner, until one connects", async () => {
    let opens = 0;
    const failures: number[] = [];
    let stream: LiveStream<number>;
    stream = new LiveStream<number>({
      name: "test",
      open: (_signal, connected) =>
        (async function* () {
          opens++;
          if (opens < 4) throw new Error("unavailable");
          connected();
          yield 1;
        })(),
      onMessage: () => stream.stop(),
      onState: (state) => {
        if (state === "down") failures.push(stream.failures);
        if (state === "live") failures.push(stream.failures);
      },
      sleep: async () => undefined,
    });
    await stream.run();
    expect(failures).toEqual([1, 2, 3, 0]);
  });

  it("restart() reopens at once, without backoff, calling onOpen each time", async () => {
    const opened: number[] = [];
    const slept: number[] = [];
    let stream: LiveStream<number>;
    const open = scripted([
      { messages: [1], then: "hang" },
      { messages: [2], then: "hang" },
    ]);
    stream = new LiveStream<number>({
      name: "test",
      open,
      onOpen: () => opened.push(stream.opens),
      onMessage: (message) => (message === 1 ? stream.restart() : stream.stop()),
      onState: () => undefined,
      sleep: async (ms) => {
        slept.push(ms);
      },
    });
    await stream.run();
    expect(opened).toEqual([1, 2]);
    expect(slept).toEqual([]);
  });
});
