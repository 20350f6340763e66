/**
 * One base error for framewise, with a stable `code`, a `permanent` flag (permanent input
 * problems are never retried by the queue) and an optional `cause`.
 *
 * Every code is listed in {@link ERROR_CODES} with the sentence that the README documents;
 * a unit test checks that every code here appears in README.md.
 */

export interface ErrorCodeInfo {
  /** True when retrying cannot help (bad input, bad configuration). */
  readonly permanent: boolean;
  /** HTTP status the API answers with. */
  readonly http: number;
  /** One-sentence meaning, as documented. */
  readonly meaning: string;
}

export const ERROR_CODES = {
  FW_ERR_INPUT_NOT_FOUND: { permanent: true, http: 404, meaning: 'The path does not exist or cannot be read.' },
  FW_ERR_INPUT_EMPTY_DIR: { permanent: true, http: 422, meaning: 'A directory or glob matched no video files.' },
  FW_ERR_INPUT_EMPTY_FILE: { permanent: true, http: 422, meaning: 'The file is zero bytes long.' },
  FW_ERR_MEDIA_NOT_VIDEO: { permanent: true, http: 422, meaning: 'ffprobe does not recognise the file as a media container (not a video, or corrupt beyond recognition).' },
  FW_ERR_MEDIA_NO_VIDEO_STREAM: { permanent: true, http: 422, meaning: 'The file is a media file without a video stream (for example audio only).' },
  FW_ERR_MEDIA_UNSUPPORTED_CONTAINER: {
    permanent: true,
    http: 422,
    meaning: 'The file is a format framewise does not read: a playlist, manifest, list or image sequence that refers to other files (HLS, DASH, concat, image2, SDP …) or a container outside the allowed list; nothing it refers to is opened.',
  },
  FW_ERR_MEDIA_UNSUPPORTED_CODEC: { permanent: true, http: 422, meaning: 'The video stream uses a codec this ffmpeg cannot decode.' },
  FW_ERR_MEDIA_TOO_LARGE: { permanent: true, http: 422, meaning: 'The frame size exceeds the configured limit (FRAMEWISE_MAX_PIXELS).' },
  FW_ERR_MEDIA_CORRUPT: { permanent: true, http: 422, meaning: 'The video could not be decoded (truncated or corrupt data): no frame came out.' },
  FW_ERR_MEDIA_TRUNCATED: { permanent: true, http: 422, meaning: 'The video stops well before its declared duration (less than 90% decodes, or frames decode but none reaches the first sampled time): the file is truncated.' },
  FW_ERR_MEDIA_DECODE_FAILED: { permanent: false, http: 500, meaning: 'ffmpeg or ffprobe failed for a reason other than the input (killed, missing binary, I/O error).' },
  FW_ERR_MANIFEST_INVALID: { permanent: true, http: 422, meaning: 'The manifest cannot be read as CSV with a header, or lacks the required columns.' },
  FW_ERR_MANIFEST_BAD_LABEL: { permanent: true, http: 422, meaning: 'A manifest row has an empty label, or a label the model does not know.' },
  FW_ERR_MODEL_NOT_FOUND: { permanent: true, http: 404, meaning: 'The model directory or its files do not exist.' },
  FW_ERR_MODEL_INVALID: { permanent: true, http: 422, meaning: 'The model files are unreadable or their metadata is invalid.' },
  FW_ERR_MODEL_CONFLICT: { permanent: true, http: 409, meaning: 'The model version is the promoted one: promote another first (or force the removal).' },
  FW_ERR_MODEL_MISMATCH: { permanent: true, http: 422, meaning: 'The head was trained on another backbone, feature kind or dimension than the one in use.' },
  FW_ERR_BACKBONE_UNAVAILABLE: { permanent: true, http: 503, meaning: 'The requested backbone, engine or backend cannot be loaded here.' },
  FW_ERR_STREAM_UNAVAILABLE: { permanent: true, http: 503, meaning: 'A per-frame stream the job or model needs (pose, hands) cannot be loaded in this build.' },
  FW_ERR_ONNX_UNSUPPORTED_OP: { permanent: true, http: 422, meaning: 'The ONNX converter met an operation it does not know how to convert.' },
  FW_ERR_TRAIN_DATA: { permanent: true, http: 422, meaning: 'Training data is unusable (fewer than two classes, a class with no examples, nothing left after failures).' },
  FW_ERR_CONFIG_INVALID: { permanent: true, http: 500, meaning: 'An environment variable or option has an invalid value.' },
  FW_ERR_FEATURE_STORE: { permanent: false, http: 500, meaning: 'The feature store could not be read or written.' },
  FW_ERR_STORAGE_FULL: { permanent: false, http: 507, meaning: 'A data or cache folder is out of space or over its quota (ENOSPC, EDQUOT): free space and retry.' },
  FW_ERR_STORAGE_READONLY: { permanent: false, http: 507, meaning: 'A data or cache folder cannot be written (read-only file system or no permission: EROFS, EACCES, EPERM).' },
  FW_ERR_REQUEST_INVALID: { permanent: true, http: 400, meaning: 'The HTTP request is malformed: a missing or invalid field, parameter or body.' },
  FW_ERR_ROUTE_NOT_FOUND: { permanent: true, http: 404, meaning: 'The API has no route for this method and path.' },
  FW_ERR_AUTH_REQUIRED: { permanent: true, http: 401, meaning: 'The API requires a key (FRAMEWISE_API_KEYS is set) and the request has no valid `Authorization: Bearer <key>` header.' },
  FW_ERR_PATH_FORBIDDEN: { permanent: true, http: 403, meaning: 'The path is outside FRAMEWISE_PATH_ROOTS once symlinks and `..` are resolved (or no roots are configured).' },
  FW_ERR_URL_FORBIDDEN: { permanent: true, http: 403, meaning: 'URL input is disabled (FRAMEWISE_ALLOW_URL_INPUT) or the URL is not http(s).' },
  FW_ERR_URL_FETCH_FAILED: { permanent: false, http: 502, meaning: 'The clip could not be downloaded from the given URL.' },
  FW_ERR_UPLOAD_TOO_LARGE: { permanent: true, http: 413, meaning: 'The upload or download is larger than FRAMEWISE_MAX_UPLOAD_BYTES.' },
  FW_ERR_JOB_NOT_FOUND: { permanent: true, http: 404, meaning: 'No job or batch with this id exists (or it has been removed).' },
  FW_ERR_JOB_CANCELLED: { permanent: true, http: 409, meaning: 'The job (or its batch) was cancelled before it finished.' },
  FW_ERR_JOB_CONFLICT: { permanent: true, http: 409, meaning: 'The job or batch is in a state that does not allow this operation (for example cancelling a finished job).' },
  FW_ERR_INPUT_CHANGED: { permanent: true, http: 409, meaning: 'The file changed between submission and decoding (its content hash differs): submit it again.' },
  FW_ERR_ARTIFACT_STORE: { permanent: false, http: 500, meaning: 'The artifact store (decoded frames between the decode and embed stages) could not be read or written.' },
  FW_ERR_ARTIFACT_MISSING: { permanent: true, http: 500, meaning: 'The decoded frames of a job are missing from the artifact store (the decode and embed workers must share FRAMEWISE_DATA_DIR).' },
  FW_ERR_DATABASE_UNAVAILABLE: { permanent: false, http: 503, meaning: 'PostgreSQL (DATABASE_URL: results, batch entries) cannot be reached, or refused the connection.' },
  FW_ERR_QUEUE_UNAVAILABLE: { permanent: false, http: 503, meaning: 'Redis (the queue) cannot be reached.' },
  FW_ERR_WEBHOOK_FAILED: { permanent: false, http: 502, meaning: 'A webhook endpoint did not answer with a 2xx status (retried with backoff).' },
  FW_ERR_INTERNAL: { permanent: false, http: 500, meaning: 'An unexpected internal error.' },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class FramewiseError extends Error {
  override readonly name = 'FramewiseError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
  }

  get permanent(): boolean {
    return ERROR_CODES[this.code].permanent;
  }

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** Any thrown value as a FramewiseError (unknown errors become FW_ERR_INTERNAL). */
export function toFramewiseError(err: unknown): FramewiseError {
  if (err instanceof FramewiseError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new FramewiseError('FW_ERR_INTERNAL', message, { cause: err });
}

const STORAGE_FULL = new Set(['ENOSPC', 'EDQUOT']);
const STORAGE_READONLY = new Set(['EROFS', 'EACCES', 'EPERM']);

/**
 * A file-system error met while writing `what` (a data or cache folder) as the storage code it
 * deserves (`FW_ERR_STORAGE_FULL` / `FW_ERR_STORAGE_READONLY`), or `fallback` for any other cause.
 * The message names what could not be written, never an absolute path.
 */
export function toStorageError(err: unknown, what: string, fallback: ErrorCode = 'FW_ERR_INTERNAL'): FramewiseError {
  if (err instanceof FramewiseError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && STORAGE_FULL.has(code)) return new FramewiseError('FW_ERR_STORAGE_FULL', `no space left to write ${what} (${code})`, { cause: err });
  if (code && STORAGE_READONLY.has(code)) return new FramewiseError('FW_ERR_STORAGE_READONLY', `cannot write ${what}: the folder is read-only or not writable (${code})`, { cause: err });
  return new FramewiseError(fallback, `cannot write ${what}${code ? ` (${code})` : ''}`, { cause: err });
}

export function isFramewiseError(err: unknown, code?: ErrorCode): err is FramewiseError {
  return err instanceof FramewiseError && (code === undefined || err.code === code);
}
