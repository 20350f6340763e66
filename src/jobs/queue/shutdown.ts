/**
 * Bounded shutdown for the long-running processes (`framewise serve`, `framewise worker`, the
 * worker entry points). The first SIGTERM/SIGINT starts a graceful close (stop taking work, let the
 * running jobs or requests finish, close Redis connections); it has `timeoutMs`
 * (FRAMEWISE_SHUTDOWN_TIMEOUT_MS, default 8 s) to finish. When it does not (Redis unreachable:
 * ioredis waits for a reconnection that never comes; a job longer than the deadline; an open
 * event stream), or when a second signal comes, the close is forced: `force` runs (bounded by
 * FORCE_MS: jobs held are handed back to their queues when Redis allows, connections are cut),
 * and the process ends with exit code 1 even if a socket or timer would keep it alive. A graceful
 * close ends with exit code 0.
 */
import type { Logger } from '../../config/log.js';

/** What a process does to close. */
export interface ShutdownPlan {
  /** Close gracefully (may never settle while Redis is unreachable). */
  graceful(): Promise<void>;
  /** Release what can be released at once; bounded by FORCE_MS. */
  force(reason: string): Promise<void>;
}

export type ShutdownOutcome = 'graceful' | 'forced';

/** How long the forced close may take before the process ends anyway. */
export const FORCE_MS = 1500;
/** After the close, how long a process with handles still open is given before it is ended. */
const EXIT_GRACE_MS = 500;

/** Exit code of a forced close. */
export const FORCED_EXIT_CODE = 1;

/** Resolve when `p` settles or after `ms`, whichever comes first; never rejects. */
const within = (p: Promise<unknown>, ms: number): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    p.then(
      () => resolve(),
      () => resolve(),
    ).finally(() => clearTimeout(t));
  });

/**
 * End the process shortly unless it ends by itself first: the timer is unref'd, so a process
 * whose event loop drains exits normally (with `process.exitCode`); one still held by a socket or
 * a reconnection timer is ended with it.
 */
function exitSoon(ms: number): void {
  setTimeout(() => process.exit(), ms).unref();
}

/**
 * Wait for SIGTERM/SIGINT, then close within the deadline (see the module comment). Resolves with
 * how the close went once it is done; `process.exitCode` is 1 for a forced close.
 */
export function shutdownOnSignals(what: string, plan: ShutdownPlan, opts: { timeoutMs: number; log: Logger; signals?: readonly NodeJS.Signals[] }): Promise<ShutdownOutcome> {
  const signals = opts.signals ?? ['SIGTERM', 'SIGINT'];
  const { log, timeoutMs } = opts;
  return new Promise((resolve) => {
    let started = false;
    let forcing: Promise<void> | undefined;
    let done = false;
    let deadline: NodeJS.Timeout | undefined;

    const finish = (outcome: ShutdownOutcome): void => {
      if (done) return;
      done = true;
      if (deadline) clearTimeout(deadline);
      for (const s of signals) process.removeListener(s, onSignal);
      if (outcome === 'forced') process.exitCode = FORCED_EXIT_CODE;
      exitSoon(outcome === 'forced' ? EXIT_GRACE_MS : EXIT_GRACE_MS + FORCE_MS);
      resolve(outcome);
    };

    const force = (reason: string): void => {
      if (forcing || done) return;
      log.warn({ reason }, `${what}: closing now (${reason})`);
      forcing = within(plan.force(reason), FORCE_MS).then(() => finish('forced'));
    };

    const onSignal = (signal: NodeJS.Signals): void => {
      if (started) {
        force(`second signal ${signal}`);
        return;
      }
      started = true;
      log.info({ signal, timeoutMs }, `${what}: closing (waiting up to ${timeoutMs} ms for running work)`);
      // a timer that holds the process: the deadline must fire even if nothing else is left
      deadline = setTimeout(() => force(`the graceful close did not finish within ${timeoutMs} ms (FRAMEWISE_SHUTDOWN_TIMEOUT_MS); Redis unreachable or work still running`), timeoutMs);
      plan.graceful().then(
        () => {
          if (forcing) return;
          log.info({}, `${what}: closed`);
          finish('graceful');
        },
        (err: unknown) => force(`the graceful close failed: ${err instanceof Error ? err.message : String(err)}`),
      );
    };
    for (const s of signals) process.on(s, onSignal);
  });
}

/**
 * Run `start` (loading models, opening connections) with SIGTERM/SIGINT held: a signal that comes
 * while the process is still starting is not lost to Node's default handling (which ends the
 * process without closing anything). Once started, the held signal is replayed to the handlers
 * `then` installs, so the close is the usual bounded one. A start-up that has not finished
 * `timeoutMs` after such a signal ends the process with FORCED_EXIT_CODE (it holds no job yet).
 */
export async function startHoldingSignals<T, R>(start: () => Promise<T>, then: (started: T) => Promise<R>, opts: { timeoutMs: number; log: Logger; signals?: readonly NodeJS.Signals[] }): Promise<R> {
  const signals = opts.signals ?? ['SIGTERM', 'SIGINT'];
  let held: NodeJS.Signals | undefined;
  let giveUp: NodeJS.Timeout | undefined;
  const hold = (signal: NodeJS.Signals): void => {
    if (held) {
      process.exit(FORCED_EXIT_CODE); // a second signal while starting: nothing to hand back yet
    }
    held = signal;
    opts.log.info({ signal }, 'signal while starting: closing once started');
    giveUp = setTimeout(() => {
      opts.log.warn({ signal, timeoutMs: opts.timeoutMs }, 'start-up did not finish after the signal: ending now');
      process.exit(FORCED_EXIT_CODE);
    }, opts.timeoutMs);
  };
  for (const s of signals) process.on(s, hold);
  let started: T;
  try {
    started = await start();
  } finally {
    for (const s of signals) process.removeListener(s, hold);
    if (giveUp) clearTimeout(giveUp);
  }
  const outcome = then(started);
  if (held) process.emit(held, held);
  return outcome;
}
