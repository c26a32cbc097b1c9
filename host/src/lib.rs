//! The `host` binary's library: plugin discovery and loading, format SPECs,
//! the Monte Carlo GMSE engine, scaling laws, ranking and output.
//! `main.rs` only calls [`cli::main`].

pub mod apply;
pub mod bench;
pub mod cli;
pub mod diag;
pub mod dist;
pub mod engine;
pub mod fit;
pub mod format;
pub mod law;
pub mod list;
pub mod loader;
pub mod output;
pub mod plot;
pub mod rank;
pub mod ranking;
pub mod rankplot;
pub mod report;
pub mod sampler;
pub mod session;
pub mod spec;
pub mod sweep;
pub mod tensorio;
pub mod train;
pub mod validate;
