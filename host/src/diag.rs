//! What went wrong while a command still produced its output, for the exit status.
//!
//! The exit status follows ripgrep's convention: 0 = everything asked for was done; 2 =
//! something failed (a library in the given paths did not load, a requested format could not be
//! built or measured, a tensor or run was skipped, a sweep job failed) but the rest was still
//! printed; 1 = nothing could be done (the command returned an error). [`fail`] prints one
//! warning line and records the failure; [`warn`] only prints (a remark about precision or
//! identifiability is not a failure).

use std::sync::atomic::{AtomicUsize, Ordering};

static FAILURES: AtomicUsize = AtomicUsize::new(0);

/// Prints a warning line on stderr.
pub fn warn(msg: impl std::fmt::Display) {
    eprintln!("host: warning: {msg}");
}

/// Prints a warning line on stderr and records that part of the work failed (exit status 2).
pub fn fail(msg: impl std::fmt::Display) {
    FAILURES.fetch_add(1, Ordering::Relaxed);
    warn(msg);
}

/// How many failures were recorded in this process.
pub fn failures() -> usize {
    FAILURES.load(Ordering::Relaxed)
}

/// The exit status of a command that returned `result`.
pub fn exit_code(result: &Result<(), String>) -> i32 {
    match result {
        Err(_) => 1,
        Ok(()) if failures() > 0 => 2,
        Ok(()) => 0,
    }
}
