//! Crate-internal macros.

#[macro_use]
mod cfg;
