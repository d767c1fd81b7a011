-- Pipeline ownership: `PostgresStore::claim` bumps a pipeline's generation (and reads its
-- checkpoint) in one transaction; `commit_checkpoint` locks the row (SELECT ... FOR UPDATE)
-- and writes only if the generation is still the committer's. So claims and commits of a
-- pipeline serialize on this row, and a new owner fences every older one at once.
CREATE TABLE pipeline_owners (
    pipeline   text        PRIMARY KEY,
    generation bigint      NOT NULL CHECK (generation > 0),
    claimed_at timestamptz NOT NULL DEFAULT now()
);
