/**
 * A stage's failure as BullMQ keeps it (`failedReason`): `<FW code>: <message>`, so that the code
 * survives every hop (a failed stage passes its reason up to its parent unchanged).
 */
import { ERROR_CODES, type ErrorCode, type FramewiseError } from '../../errors/index.js';

const FAILED_REASON = /^(FW_ERR_[A-Z_]+): ([\s\S]*)$/;

/** `failedReason` → {code, message}: stage errors are written `<FW code>: <message>`. */
export function parseFailedReason(reason: string | undefined): { code: ErrorCode; message: string } {
  const m = FAILED_REASON.exec(reason ?? '');
  if (m && (m[1] as string) in ERROR_CODES) return { code: m[1] as ErrorCode, message: m[2] as string };
  return { code: 'FW_ERR_INTERNAL', message: reason && reason !== '' ? reason : 'the job failed without a reason' };
}

/** The message a stage throws, so that `failedReason` starts with the code. */
export const formatFailedReason = (e: FramewiseError): string => `${e.code}: ${e.message}`;

/**
 * Whether a failed clip may be run again by resubmitting: not when the input itself is bad. A
 * cancellation, a file changed after submission, or a file gone (an upload past its retention
 * window: the new submission brings the bytes again) may run again.
 */
export function failureIsFinal(code: ErrorCode | string): boolean {
  if (!(code in ERROR_CODES)) return false;
  return ERROR_CODES[code as ErrorCode].permanent && code !== 'FW_ERR_JOB_CANCELLED' && code !== 'FW_ERR_INPUT_CHANGED' && code !== 'FW_ERR_INPUT_NOT_FOUND';
}
