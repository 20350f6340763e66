/** Commander argument parsers shared by every command: each names its option in the error. */
import { InvalidArgumentError } from 'commander';

type Parser = (v: string) => number;

function numberParser(test: (n: number) => boolean, what: string): (name: string) => Parser {
  return (name) => (v) => {
    const n = Number(v);
    if (v.trim() === '' || !test(n)) throw new InvalidArgumentError(`${name} must be ${what}`);
    return n;
  };
}

export const positiveInt = numberParser((n) => Number.isInteger(n) && n >= 1, 'a positive integer');
export const nonNegativeInt = numberParser((n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0');
export const positiveNumber = numberParser((n) => Number.isFinite(n) && n > 0, 'a positive number');
export const nonNegativeNumber = numberParser((n) => Number.isFinite(n) && n >= 0, 'a number ≥ 0');
export const unitInterval = numberParser((n) => Number.isFinite(n) && n >= 0 && n <= 1, 'a number in [0, 1]');
/** A dropout-style rate in [0, 1). */
export const rate = numberParser((n) => Number.isFinite(n) && n >= 0 && n < 1, 'in [0, 1)');
