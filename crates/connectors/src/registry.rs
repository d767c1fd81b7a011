//! Builds adapters from config.
