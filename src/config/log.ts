/** The process logger: pino, JSON lines on stderr (stdout is kept for results). */
import { pino, type Logger } from 'pino';

let root: Logger | undefined;

export function getLogger(level?: string): Logger {
  if (!root) root = pino({ name: 'framewise', level: level ?? 'info' }, pino.destination({ dest: 2, sync: true }));
  else if (level) root.level = level;
  return root;
}

export type { Logger };
