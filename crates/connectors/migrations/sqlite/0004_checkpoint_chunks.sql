-- State chunks (tributary_core::ports::StateChunk): append-only pieces of a pipeline's
-- operator state, kept beside its checkpoint row so that a checkpoint writes what changed
-- instead of the whole state. `commit_checkpoint` deletes the dropped groups and inserts the
-- new chunks in the checkpoint's transaction (under `BEGIN IMMEDIATE`); `claim` reads them
-- by (grp, epoch, seq): by group, then in commit order. `epoch` is the epoch of the
-- checkpoint that wrote the chunk, `seq` its position in that checkpoint's delta. Chunks
-- are up to hundreds of KiB, so the table keeps its rowid.
CREATE TABLE checkpoint_chunks (
    pipeline TEXT    NOT NULL,
    grp      INTEGER NOT NULL,
    epoch    INTEGER NOT NULL CHECK (epoch > 0),
    seq      INTEGER NOT NULL CHECK (seq >= 0),
    bytes    BLOB    NOT NULL,
    PRIMARY KEY (pipeline, grp, epoch, seq)
);
