//! The `host` binary's library: the command line ([`cli`]) and the verbs that are thin enough to
//! live beside it (`list`/`law`, `rank`, `apply`, `bench`), over the library crates under
//! `crates/` (see ARCHITECTURE.md). `main.rs` only calls [`cli::main`].
//!
//! Owns: argument parsing and dispatch, and the output of those verbs. Never: is imported by a
//! library crate (dependencies point from here down, never back), and no module but `main.rs`
//! imports [`cli`].
//!
//! The modules that moved into the library crates are re-exported under their old paths
//! (`host::spec`, `host::fit::data`, `host::sweep::exp`, ...), so tests and other users of this
//! library keep compiling.

pub use host_core::{diag, dist, engine, format, law, loader, rank, sampler, session, spec, tensorio};
pub use host_fit as fit;
pub use host_plot as plot;
pub use host_report::{rankplot, report};
pub use host_sweep as sweep;
pub use host_train as train;
pub use host_validate as validate;

pub mod apply;
pub mod bench;
pub mod cli;
pub mod list;
pub mod output;
pub mod ranking;
