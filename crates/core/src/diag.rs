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

/// One problem a library function met while still producing its value.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// A remark, not a failure (exit status unchanged).
    Warning(String),
    /// Part of the work failed (exit status 2); `detail` is the long report shown with `--verbose`.
    Failure {
        /// The one-line message.
        message: String,
        /// A long report (e.g. abi_stable's layout dump), printed only when verbose.
        detail: Option<String>,
    },
}

/// The problems a call met, in order, for its caller to [`report`](Diagnostics::report).
///
/// Library code (the session layer, the measurement core) returns this value instead of printing
/// from deep inside; the command that called it decides when to print (at once, so the order of
/// stderr lines is the order of events) and the exit status follows from the failures.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "report the diagnostics (or pass them on) so no failure goes unseen"]
pub struct Diagnostics {
    /// The problems, in the order met.
    pub problems: Vec<Problem>,
}

impl Diagnostics {
    /// Adds a warning.
    pub fn warning(&mut self, msg: impl std::fmt::Display) {
        self.problems.push(Problem::Warning(msg.to_string()));
    }

    /// Adds a failure.
    pub fn failure(&mut self, msg: impl std::fmt::Display) {
        self.failure_with(msg, None);
    }

    /// Adds a failure with a long report for `--verbose`.
    pub fn failure_with(&mut self, msg: impl std::fmt::Display, detail: Option<String>) {
        self.problems.push(Problem::Failure { message: msg.to_string(), detail });
    }

    /// Appends `other`'s problems after these.
    pub fn append(&mut self, other: Diagnostics) {
        self.problems.extend(other.problems);
    }

    /// Whether nothing went wrong.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// How many failures (not warnings) were met.
    pub fn failures(&self) -> usize {
        self.problems.iter().filter(|p| matches!(p, Problem::Failure { .. })).count()
    }

    /// Prints every problem on stderr in order ([`warn`] / [`fail`]; a failure's detail too
    /// when `verbose`), recording the failures for the exit status.
    pub fn report(self, verbose: bool) {
        for p in self.problems {
            match p {
                Problem::Warning(m) => warn(m),
                Problem::Failure { message, detail } => {
                    fail(message);
                    if verbose && let Some(d) = detail {
                        eprintln!("{d}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_keep_order_and_count_failures_only() {
        let mut d = Diagnostics::default();
        assert!(d.is_empty());
        d.warning("w1");
        d.failure("f1");
        let mut e = Diagnostics::default();
        e.failure_with("f2", Some("long".into()));
        d.append(e);
        assert_eq!(d.failures(), 2);
        assert_eq!(
            d.problems,
            vec![
                Problem::Warning("w1".into()),
                Problem::Failure { message: "f1".into(), detail: None },
                Problem::Failure { message: "f2".into(), detail: Some("long".into()) },
            ]
        );
    }
}
