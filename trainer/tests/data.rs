//! Data sources: synthetic stream structure and determinism, file splits,
//! batches, validation windows, error messages.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use trainer::data::{ALPHABET, Data, KEY_LEN, RECORD_LEN, Source, Synthetic, VALUE_LEN, is_validation_file};

/// A fresh empty folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("trainer-data-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Deterministic file contents: `n` bytes, distinct per `tag`.
fn content(tag: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + ((i * 7 + tag as usize * 13) % 26) as u8).collect()
}

fn open_paths(paths: &[&Path]) -> Result<Data, String> {
    Data::open(&Source::Paths(paths.iter().map(|p| p.to_path_buf()).collect()))
}

/// Checks that `w` is a suffix of a record followed by whole records and a
/// record prefix, and records key -> value pairs.
fn check_stream(w: &[u8], kv: &mut HashMap<Vec<u8>, Vec<u8>>) {
    let nl = w.iter().position(|&b| b == b'\n').expect("a window of >= RECORD_LEN bytes holds a newline");
    let offset = RECORD_LEN - 1 - nl;
    // Re-align: pretend the window started at the beginning of its record.
    let mut aligned = vec![b'?'; offset];
    aligned.extend_from_slice(w);
    for rec in aligned.chunks(RECORD_LEN) {
        for (j, &b) in rec.iter().enumerate() {
            if b == b'?' {
                continue;
            }
            match j {
                _ if j == KEY_LEN => assert_eq!(b, b':'),
                _ if j == RECORD_LEN - 1 => assert_eq!(b, b'\n'),
                _ => assert!(ALPHABET.contains(&b), "byte {b} at {j}"),
            }
        }
        if rec.len() == RECORD_LEN && rec[0] != b'?' {
            let (k, v) = (rec[..KEY_LEN].to_vec(), rec[KEY_LEN + 1..KEY_LEN + 1 + VALUE_LEN].to_vec());
            let prev = kv.entry(k).or_insert_with(|| v.clone());
            assert_eq!(*prev, v, "a key maps to two values");
        }
    }
}

#[test]
fn synthetic_batches_are_records_and_deterministic() {
    let data = Data::open(&Source::default()).unwrap();
    let ctx = 64;
    data.check_context(ctx).unwrap();
    let a = data.train_batch(5, 16, ctx, 42);
    assert_eq!(a.len(), 16 * 65);
    assert_eq!(a, data.train_batch(5, 16, ctx, 42), "same (seed, step) => same batch");
    assert_ne!(a, data.train_batch(6, 16, ctx, 42), "another step => another batch");
    assert_ne!(a, data.train_batch(5, 16, ctx, 43), "another seed => another batch");
    // Row r depends on (seed, step, r) only: a smaller batch is a prefix.
    assert_eq!(&a[..4 * 65], &data.train_batch(5, 4, ctx, 42)[..]);
    let mut out = vec![0u8; 16 * 65];
    data.fill_train_batch(5, 16, ctx, 42, &mut out);
    assert_eq!(out, a);

    let mut kv = HashMap::new();
    let mut offsets = [0usize; RECORD_LEN];
    for step in 0..50 {
        for w in data.train_batch(step, 16, ctx, 1).chunks(ctx + 1) {
            check_stream(w, &mut kv);
            offsets[RECORD_LEN - 1 - w.iter().position(|&b| b == b'\n').unwrap()] += 1;
        }
    }
    // 800 windows: every start offset in 0..10 occurs (each has p = 0.1;
    // P(some offset never occurs) < 10 * 0.9^800, about 1e-35).
    assert!(offsets.iter().all(|&c| c > 0), "{offsets:?}");
    // At most K distinct keys, and the frequent ones all show up.
    assert!(kv.len() <= 4096 && kv.len() > 100, "{} keys", kv.len());

    // Validation windows: fixed, prefix-stable, same format, and not
    // the training windows.
    let v = data.val_batches(32, ctx);
    assert_eq!(v.len(), 32 * 65);
    assert_eq!(v, Data::open(&Source::default()).unwrap().val_batches(32, ctx));
    assert_eq!(&v[..8 * 65], &data.val_batches(8, ctx)[..]);
    for w in v.chunks(65) {
        check_stream(w, &mut kv);
    }
    assert_ne!(&v[..16 * 65], &a[..]);
}

#[test]
fn synthetic_description_and_losses() {
    let data = Data::open(&Source::default()).unwrap();
    let rate = data.entropy_rate().unwrap();
    // H(Zipf) for K = 4096, a = 0.5 is 3.04605 nats (unit test), per 10-byte record.
    assert!((rate - 0.304605).abs() < 1e-6, "{rate}");
    let l = data.irreducible_loss(256).unwrap();
    assert!(l > rate && l < rate + 0.01, "{l}");
    assert_eq!(data.irreducible_loss(8), None);
    assert_eq!(data.train_bytes(), None);
    assert_eq!(data.val_bytes(), None);
    let d = data.describe();
    assert!(d.contains("K=4096") && d.contains("a=0.5") && d.contains("0.3046"), "{d}");
    assert_eq!(data.id(), Data::open(&Source::default()).unwrap().id());

    // Other parameters: other table, other validation data.
    let small = Data::open(&Source::Synthetic(Synthetic { facts: 16, alpha: 1.0, ..Synthetic::default() })).unwrap();
    assert!(small.entropy_rate().unwrap() < rate);
    assert_ne!(small.val_batches(4, 32), data.val_batches(4, 32));
    assert_ne!(small.id(), data.id());
}

#[test]
fn synthetic_errors() {
    let bad_k = Data::open(&Source::Synthetic(Synthetic { facts: 0, ..Synthetic::default() })).err().unwrap();
    assert!(bad_k.contains("K = 0"), "{bad_k}");
    let bad_a = Data::open(&Source::Synthetic(Synthetic { alpha: f64::NAN, ..Synthetic::default() })).err().unwrap();
    assert!(bad_a.contains("exponent"), "{bad_a}");
    let data = Data::open(&Source::default()).unwrap();
    let e = data.check_context(8).unwrap_err();
    assert!(e.contains("at least 9"), "{e}");
    data.check_context(9).unwrap();
    assert!(data.check_context(0).is_err());
}

#[test]
fn folder_split_every_tenth_file() {
    let dir = TempDir::new("twelve");
    let mut expect_train = Vec::new();
    let mut expect_val = Vec::new();
    // 12 files of different sizes, written in scrambled order; sorted by
    // name f00..f11, f09 is the validation file.
    for i in [3usize, 11, 0, 7, 9, 1, 2, 4, 5, 6, 8, 10] {
        fs::write(dir.0.join(format!("f{i:02}.txt")), content(i as u8, 1000 + 37 * i)).unwrap();
    }
    for i in 0..12 {
        let c = content(i as u8, 1000 + 37 * i);
        if i == 9 { expect_val.extend(c) } else { expect_train.extend(c) }
    }
    fs::write(dir.0.join(".hidden"), b"never read").unwrap();
    let data = open_paths(&[&dir.0]).unwrap();
    assert_eq!(data.val_bytes(), Some(expect_val.len() as u64));
    assert_eq!(data.train_bytes(), Some(expect_train.len() as u64));
    let (tf, vf) = data.split_files();
    assert_eq!(tf.len(), 11);
    assert_eq!(vf, &[dir.0.join("f09.txt")]);
    let d = data.describe();
    assert!(d.starts_with("12 files in") && d.contains("f09.txt"), "{d}");

    // Training windows are contiguous pieces of the training bytes.
    let ctx = 100;
    data.check_context(ctx).unwrap();
    let batch = data.train_batch(3, 8, ctx, 9);
    assert_eq!(batch, data.train_batch(3, 8, ctx, 9));
    assert_ne!(batch, data.train_batch(4, 8, ctx, 9));
    for w in batch.chunks(ctx + 1) {
        assert!(expect_train.windows(ctx + 1).any(|t| t == w));
    }
    // Validation: 1333 bytes hold 13 windows of 101; asking for 5 gives 5
    // evenly spread non-overlapping windows starting at 0 and ending at the
    // last byte; asking for 100 gives the 13 consecutive ones.
    let v = data.val_batches(5, ctx);
    assert_eq!(v.len(), 5 * 101);
    let n = expect_val.len();
    assert_eq!(&v[..101], &expect_val[..101]);
    assert_eq!(&v[4 * 101..], &expect_val[n - 101..]);
    for (i, w) in v.chunks(101).enumerate() {
        let start = i * (n - 101) / 4;
        assert_eq!(w, &expect_val[start..start + 101]);
    }
    let all = data.val_batches(100, ctx);
    assert_eq!(all, expect_val[..13 * 101].to_vec());
    // The validation windows never depend on a seed: a second opening gives the same.
    assert_eq!(open_paths(&[&dir.0]).unwrap().val_batches(5, ctx), v);
}

#[test]
fn few_files_validate_on_the_last_one_and_folders_recurse() {
    let dir = TempDir::new("three");
    fs::create_dir_all(dir.0.join("sub/deeper")).unwrap();
    fs::write(dir.0.join("b.txt"), content(1, 500)).unwrap();
    fs::write(dir.0.join("sub/deeper/z.txt"), content(2, 300)).unwrap();
    fs::write(dir.0.join("a.txt"), content(3, 400)).unwrap();
    let data = open_paths(&[&dir.0]).unwrap();
    // Sorted: a.txt, b.txt, sub/deeper/z.txt -> z.txt validates.
    assert_eq!(data.train_bytes(), Some(900));
    assert_eq!(data.val_bytes(), Some(300));
    assert_eq!(data.split_files().1, &[dir.0.join("sub/deeper/z.txt")]);
    // Giving files explicitly (unsorted, one twice) gives the same split.
    let data2 = open_paths(&[&dir.0.join("b.txt"), &dir.0.join("a.txt"), &dir.0.join("b.txt")]).unwrap();
    assert_eq!((data2.train_bytes(), data2.val_bytes()), (Some(400), Some(500)));
    assert_eq!(data2.split_files().1, &[dir.0.join("b.txt")]);
    // The rule itself.
    assert!(is_validation_file(1, 2) && !is_validation_file(0, 2));
    let val: Vec<usize> = (0..42).filter(|&i| is_validation_file(i, 42)).collect();
    assert_eq!(val, [9, 19, 29, 39]);
}

#[test]
fn single_file_splits_last_tenth() {
    let dir = TempDir::new("single");
    let f = dir.0.join("corpus.txt");
    let bytes = content(5, 1234);
    fs::write(&f, &bytes).unwrap();
    let data = open_paths(&[&f]).unwrap();
    // floor(0.9 * 1234) = 1110 train bytes, 124 validation bytes.
    assert_eq!(data.train_bytes(), Some(1110));
    assert_eq!(data.val_bytes(), Some(124));
    assert!(data.describe().starts_with("1 file"));
    let ctx = 50;
    data.check_context(ctx).unwrap();
    for w in data.train_batch(0, 20, ctx, 1).chunks(ctx + 1) {
        assert!(bytes[..1110].windows(ctx + 1).any(|t| t == w));
    }
    assert_eq!(data.val_batches(10, ctx), bytes[1110..1110 + 2 * 51].to_vec());
    // 124 validation bytes: context 123 fits, 124 does not.
    data.check_context(123).unwrap();
    let e = data.check_context(124).unwrap_err();
    assert!(e.contains("validation split") && e.contains("has 124 bytes; need at least 125 for context 124"), "{e}");
    assert!(e.contains("corpus.txt"), "{e}");
    assert!(data.irreducible_loss(100).is_none() && data.entropy_rate().is_none());
}

#[test]
fn file_errors_name_the_path() {
    let dir = TempDir::new("errors");
    let missing = dir.0.join("nope.txt");
    let e = open_paths(&[&missing]).err().unwrap();
    assert!(e.contains("nope.txt") && e.contains("--data"), "{e}");

    let empty = dir.0.join("empty.txt");
    fs::write(&empty, b"").unwrap();
    let e = open_paths(&[&empty]).err().unwrap();
    assert!(e.contains("empty.txt") && e.contains("is empty"), "{e}");

    let folder = dir.0.join("nothing");
    fs::create_dir_all(&folder).unwrap();
    fs::write(folder.join(".ignored"), b"x").unwrap();
    let e = open_paths(&[&folder]).err().unwrap();
    assert!(e.contains("nothing") && e.contains("holds no files"), "{e}");

    let one = dir.0.join("one.txt");
    fs::write(&one, b"x").unwrap();
    let e = open_paths(&[&one]).err().unwrap();
    assert!(e.contains("one.txt") && e.contains("at least 2"), "{e}");

    let e = Data::open(&Source::Paths(vec![])).err().unwrap();
    assert!(e.contains("--data"), "{e}");

    // Training split too short (two files: 30 train bytes, 500 validation bytes).
    let two = dir.0.join("two");
    fs::create_dir_all(&two).unwrap();
    fs::write(two.join("a"), content(0, 30)).unwrap();
    fs::write(two.join("b"), content(1, 500)).unwrap();
    let data = open_paths(&[&two]).unwrap();
    let e = data.check_context(64).unwrap_err();
    assert!(e.contains("training split (a) has 30 bytes; need at least 65 for context 64"), "{e}");
}

/// Run by hand after `tools/shakespeare/fetch.sh` (from the workspace root):
/// `cargo test --release -p trainer --test data -- --ignored` (the folder
/// defaults to `data/shakespeare` in the workspace; set `SHAKESPEARE_DIR`
/// for another).
#[test]
#[ignore = "needs data/shakespeare from tools/shakespeare/fetch.sh"]
fn shakespeare_split() {
    let dir = std::env::var_os("SHAKESPEARE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/shakespeare"));
    let data = open_paths(&[&dir]).unwrap();
    eprintln!("{}", data.describe());
    assert_eq!(data.train_bytes().unwrap() + data.val_bytes().unwrap(), 5_057_198);
    assert_eq!(data.val_bytes(), Some(457_244));
    let names: Vec<_> = data.split_files().1.iter().map(|p| p.file_name().unwrap().to_owned()).collect();
    assert_eq!(names, ["henry_v_gut.txt", "macbeth_gut.txt", "rape_of_lucrece_gut.txt", "twelfth_night_gut.txt"]);
}

#[test]
fn parse_data_specs() {
    assert_eq!(Source::parse("synthetic").unwrap(), Source::default());
    let s = Source::parse("synthetic:facts=100,alpha=0.25,seed=0x10").unwrap();
    assert_eq!(s, Source::Synthetic(Synthetic { facts: 100, alpha: 0.25, data_seed: 16 }));
    let s = Source::parse("synthetic:a=1").unwrap();
    assert_eq!(s, Source::Synthetic(Synthetic { alpha: 1.0, ..Synthetic::default() }));
    assert_eq!(Source::parse("data/x").unwrap(), Source::Paths(vec![PathBuf::from("data/x")]));
    assert_eq!(Source::parse("./synthetic").unwrap(), Source::Paths(vec![PathBuf::from("./synthetic")]));
    for bad in ["", "synthetic:facts=x", "synthetic:colour=red", "synthetic:facts", "synthetics"] {
        let e = Source::parse(bad).unwrap_err();
        assert!(e.contains("data spec") || e.contains("--data"), "{bad}: {e}");
    }
}
