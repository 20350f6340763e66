/**
 * The label result contract as JSON Schema (draft 2020-12): `schemas/result-v1.schema.json`, the
 * same for the CLI (`label`, with or without `--windows`), the HTTP API and webhooks. This module
 * loads it and validates results against it (ajv); tests validate every result they produce.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { PROJECT_ROOT } from '../config/index.js';

export const RESULT_SCHEMA_PATH = join(PROJECT_ROOT, 'schemas', 'result-v1.schema.json');
export const RESULT_SCHEMA_ID = 'https://framewise.dev/schemas/result-v1.schema.json';

let compiled: ValidateFunction | undefined;
let schema: Record<string, unknown> | undefined;

/** The schema document (parsed once). */
export function resultSchema(): Record<string, unknown> {
  schema ??= JSON.parse(readFileSync(RESULT_SCHEMA_PATH, 'utf8')) as Record<string, unknown>;
  return schema;
}

function validator(): ValidateFunction {
  if (!compiled) {
    const ajv = new Ajv2020({ allErrors: true, strict: true });
    compiled = ajv.compile(resultSchema());
  }
  return compiled;
}

export interface ResultValidation {
  valid: boolean;
  /** `instancePath: message` for each problem (empty when valid). */
  errors: string[];
}

/** Validate one result (a parsed JSON object) against result v1. */
export function validateResult(result: unknown): ResultValidation {
  const v = validator();
  const valid = v(result) as boolean;
  const errors = (v.errors ?? []).map((e: ErrorObject) => `${e.instancePath || '/'}: ${e.message ?? e.keyword}${e.params && Object.keys(e.params).length > 0 ? ` ${JSON.stringify(e.params)}` : ''}`);
  return { valid, errors: valid ? [] : errors };
}

/** Throw (listing every problem) unless `result` is a valid result v1. */
export function assertValidResult(result: unknown): void {
  const r = validateResult(result);
  if (!r.valid) {
    const path = (result as { path?: unknown } | null)?.path;
    throw new Error(`result${typeof path === 'string' ? ` for ${path}` : ''} does not match ${RESULT_SCHEMA_ID}:\n  ${r.errors.join('\n  ')}`);
  }
}
