/** Progress bars on a terminal (stderr), silence otherwise. */
import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, fields?: Record<string, string | number>): void;
  stop(): void;
}

const silent: Progress = { update: () => undefined, stop: () => undefined };

/** A bar on stderr when it is a TTY and `quiet` is false; a no-op otherwise. */
export function createProgress(title: string, total: number, quiet: boolean): Progress {
  if (quiet || !process.stderr.isTTY || total <= 0) return silent;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${title.padEnd(8)} [{bar}] {value}/{total} {percentage}% | eta {eta_formatted} | {status}`,
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { status: '' });
  return {
    update: (done, fields) => bar.update(done, { status: '', ...fields }),
    stop: () => bar.stop(),
  };
}
