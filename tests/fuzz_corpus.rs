//! The fuzz corpora as regression tests, on the stable toolchain: every file
//! of `fuzz/corpus/<target>/` (inputs libFuzzer found interesting, minimized)
//! and of `fuzz/regressions/<target>/` (inputs that once crashed, hung or
//! exhausted memory) goes through the same function the fuzz target runs,
//! which must return without panicking and without one allocation above
//! 64 MiB. See `fuzz/README.md`.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// The system allocator, noting the largest single request on each thread,
/// so that an allocation sized from a length field in the input (which the
/// system would grant lazily here) fails the test as it fails the fuzzer's
/// `-malloc_limit_mb`.
struct Watch;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the bookkeeping allocates nothing.
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Watch = Watch;

/// Largest allocation one input may make: every input is a few KiB, and no
/// parser needs more than a small multiple of its input.
const MAX_ALLOC: usize = 64 << 20;

/// The files of `dir` (none when it does not exist), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

#[test]
fn every_corpus_and_regression_input_runs_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for (target, body) in harness::TARGETS {
        let corpus = files(&root.join("corpus").join(target));
        assert!(!corpus.is_empty(), "fuzz/corpus/{target} is empty: every target's corpus is committed");
        let regressions = files(&root.join("regressions").join(target));
        counts.push(format!("{target} {} + {}", corpus.len(), regressions.len()));
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap();
            LARGEST.set(0);
            if std::panic::catch_unwind(|| body(&data)).is_err() {
                failures.push(format!("{target}: {}: panicked", path.display()));
            }
            let largest = LARGEST.get();
            if largest > MAX_ALLOC {
                failures.push(format!("{target}: {}: allocated {largest} bytes at once", path.display()));
            }
        }
    }
    println!("fuzz inputs run (corpus + regressions): {}", counts.join(", "));
    assert!(failures.is_empty(), "inputs that fail:\n{}", failures.join("\n"));
}
