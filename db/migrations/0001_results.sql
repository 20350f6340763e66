-- Results, batches and their entries: the durable record of queue mode (Redis keeps only what the
-- queue needs). Applied by src/db/migrate.ts inside one transaction, with search_path set to
-- FRAMEWISE_DB_SCHEMA.

-- One row per clip job: (content hash, model version, backbone, sampling, top-k, windows) → the
-- outcome. Written by the classify worker (upsert by job id: retries and redeliveries overwrite the
-- same row), and for cancellations.
CREATE TABLE results (
  job_id        text PRIMARY KEY,
  id            bigint GENERATED ALWAYS AS IDENTITY UNIQUE, -- first-write order, for paging
  content_hash  text NOT NULL,
  model_id      text NOT NULL,
  model_version text NOT NULL,
  backbone      text NOT NULL,            -- id@version/featureKind
  sampling      text NOT NULL,            -- the sampling key (policy and geometry)
  windows       text,                     -- windowed clips: windows and merge settings; NULL: clip-level
  top_k_count   integer NOT NULL,
  path          text NOT NULL,            -- the name the clip was first submitted under
  real_path     text,                     -- the file the workers read
  batch_id      text,                     -- the batch it was first submitted with
  ok            boolean NOT NULL,
  label         text,
  confidence    double precision,
  top_k         jsonb,
  segments      jsonb,
  error_code    text,
  error_message text,
  result        json NOT NULL,            -- the result line as `framewise label` prints it, key order kept (its path: `path`)
  timings       jsonb,                    -- {decodeMs, embedMs, classifyMs, attempts}
  created_at    timestamptz NOT NULL DEFAULT now(),
  finished_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX results_label_confidence ON results (label, confidence);
CREATE INDEX results_model ON results (model_id, model_version);
CREATE INDEX results_finished_at ON results (finished_at);
CREATE INDEX results_path_prefix ON results (path text_pattern_ops);
CREATE INDEX results_batch ON results (batch_id);

-- One row per batch (the live counters are in Redis while it runs; `status` keeps the final ones).
CREATE TABLE batches (
  batch_id    text PRIMARY KEY,
  created_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  state       text NOT NULL,
  mode        text NOT NULL,
  source      jsonb NOT NULL,
  options     jsonb NOT NULL,             -- model, top-k, windows, webhook, path roots
  status      jsonb                       -- the final status (counts, ingest figures)
);
CREATE INDEX batches_created_at ON batches (created_at);

-- One row per file (or manifest row, or listing error) of a batch, in listing order. `item` is what
-- the listing names (a path, or a manifest line): an ingest that starts again after a crash skips
-- the items it recorded before, so no file is queued twice and none is left out.
CREATE TABLE batch_entries (
  batch_id      text NOT NULL REFERENCES batches (batch_id) ON DELETE CASCADE,
  seq           bigint NOT NULL,
  item          text NOT NULL,
  source        text NOT NULL,            -- the file as listed (results name it so)
  real_path     text,
  content_hash  text,
  job_id        text,
  state         text NOT NULL CHECK (state IN ('submitting', 'queued', 'completed', 'failed', 'cancelled', 'skipped', 'rejected')),
  error_code    text,
  error_message text,
  finished_at   timestamptz,
  PRIMARY KEY (batch_id, seq),
  UNIQUE (batch_id, item)
);
-- unfinished entries only: small (bounded by the ingest window), what workers and backpressure read
CREATE INDEX batch_entries_open_by_job ON batch_entries (job_id) WHERE state IN ('submitting', 'queued');
CREATE INDEX batch_entries_open_by_batch ON batch_entries (batch_id) WHERE state IN ('submitting', 'queued');

-- `mode: missing` without hashing: (model identity, real path) → the file's size and mtime when it
-- was hashed, and its job.
CREATE TABLE file_index (
  model_key text NOT NULL,
  path      text NOT NULL,
  size      bigint NOT NULL,
  mtime_ms  double precision NOT NULL,
  job_id    text NOT NULL,
  PRIMARY KEY (model_key, path)
);
