//! sqlite adapter.
