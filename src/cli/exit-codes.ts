/** The CLI's exit codes (README "Exit codes"): every command returns one of these. */
export const EXIT = { OK: 0, PARTIAL: 1, USAGE: 2, FAILED: 3 } as const;
