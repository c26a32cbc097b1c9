//! The measurement core of `host`: plugins loaded, SPECs resolved, formats built, Gaussian MSE
//! measured, mapped to capacity by a law, and ranked.
//!
//! Owns: plugin discovery and loading ([`loader`]), SPECs ([`spec`]), the host's view of a
//! format and its compositions ([`format`]), seeded tensors ([`sampler`], [`dist`]), tensor files
//! ([`tensorio`]), the Monte Carlo GMSE engine ([`engine`]), laws and law files ([`law`]),
//! ranking ([`rank`]), and the one layer every verb gets its formats through ([`session`]), with
//! the diagnostics value it reports problems in ([`diag`]).
//!
//! Never: parses a command line, knows a verb (`fit`, `sweep`, `train`, ... are crates above
//! this one), prints results, or prints from inside a library call (problems come back as
//! [`diag::Diagnostics`]; only [`diag::Diagnostics::report`], [`diag::warn`] and
//! [`diag::fail`], called by a verb, write to stderr). Depends on no other `host-*` crate.

pub mod diag;
pub mod dist;
pub mod engine;
pub mod format;
pub mod law;
pub mod loader;
pub mod rank;
pub mod sampler;
pub mod session;
pub mod spec;
pub mod tensorio;
