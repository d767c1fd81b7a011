-- State chunks (tributary_core::ports::StateChunk): append-only pieces of a pipeline's
-- operator state, kept beside its checkpoint row so that a checkpoint writes what changed
-- instead of the whole state. `commit_checkpoint` deletes the dropped groups and inserts the
-- new chunks in the checkpoint's transaction, under the owner row's lock; `claim` reads
-- them by (grp, epoch, seq): by group, then in commit order. `epoch` is the epoch of the
-- checkpoint that wrote the chunk, `seq` its position in that checkpoint's delta.
CREATE TABLE checkpoint_chunks (
    pipeline text   NOT NULL,
    grp      bigint NOT NULL,
    epoch    bigint NOT NULL CHECK (epoch > 0),
    seq      bigint NOT NULL CHECK (seq >= 0),
    bytes    bytea  NOT NULL,
    PRIMARY KEY (pipeline, grp, epoch, seq)
);
