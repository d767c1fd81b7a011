//! mongodb adapter.
