//! Checkpoint files: named f32 tensors plus JSON metadata in the
//! [safetensors](https://huggingface.co/docs/safetensors) format.
//!
//! The file's `__metadata__` holds two string entries: `"trainer"`, the
//! caller's metadata as a JSON string, and `"trainer_order"`, a JSON array of
//! the tensor names in the order they were saved (safetensors itself stores
//! tensors sorted by name). Any safetensors reader can open the file; the
//! tensors are little-endian F32.
//!
//! Writes are atomic: the bytes go to `<path>.tmp-<pid>` in the same folder,
//! are flushed to disk, then renamed over `path`, so a crash leaves either the
//! old checkpoint or the new one, never a torn file.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// A named tensor: its name and its values with their shape.
pub type Tensor = (String, ArrayD<f32>);

/// The tensors of a checkpoint, in order (parameters and Adam moments, as
/// [`crate::Trainer::state`] names them).
pub type Tensors = Vec<Tensor>;

const META_KEY: &str = "trainer";
const ORDER_KEY: &str = "trainer_order";

/// Writes `tensors` and `meta` to `path` atomically (see the module
/// documentation); values are written in row-major order whatever the arrays' memory layout.
/// Errors name the path: duplicate or empty tensor names, I/O failures.
pub fn save(path: &Path, tensors: &[Tensor], meta: &serde_json::Value) -> Result<(), String> {
    let mut names = HashSet::new();
    for (name, _) in tensors {
        if name.is_empty() || !names.insert(name.as_str()) {
            return Err(format!("checkpoint {}: tensor name {name:?} is empty or repeated", path.display()));
        }
    }
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, a)| a.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, array), data) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, array.shape().to_vec(), data)
            .map_err(|e| format!("checkpoint {}: tensor {name}: {e}", path.display()))?;
        views.push((name.as_str(), view));
    }
    let order: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let info = HashMap::from([
        (META_KEY.to_string(), meta.to_string()),
        (ORDER_KEY.to_string(), serde_json::to_string(&order).expect("names serialize")),
    ]);
    let buf = safetensors::serialize(views, Some(info))
        .map_err(|e| format!("checkpoint {}: cannot serialize: {e}", path.display()))?;
    write_atomic(path, &buf)
}

/// Writes `bytes` to `path` through a temporary file in the same folder,
/// fsync and rename; the temporary file is removed on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let name = path.file_name().ok_or_else(|| format!("{} is not a file path; name a file", path.display()))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp: PathBuf = path.with_file_name(tmp_name);
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable (best effort: not every platform
        // can open a folder).
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write {}: {e}; check that the folder exists and is writable", path.display())
    })
}

/// Reads a checkpoint written by [`save`]: the tensors in the order they
/// were saved (by name for files from other writers) and the metadata.
/// Errors name the path for a missing, truncated or corrupt file, a tensor
/// that is not F32, or missing `trainer` metadata.
pub fn load(path: &Path) -> Result<(Tensors, serde_json::Value), String> {
    let buf = fs::read(path).map_err(|e| format!("cannot read checkpoint {}: {e}", path.display()))?;
    let bad = |what: String| format!("checkpoint {} is corrupt or not a trainer checkpoint: {what}", path.display());
    let (_, header) = SafeTensors::read_metadata(&buf).map_err(|e| bad(e.to_string()))?;
    let st = SafeTensors::deserialize(&buf).map_err(|e| bad(e.to_string()))?;
    let (meta, order) = {
        let info = header.metadata().as_ref().ok_or_else(|| bad("no metadata".into()))?;
        let meta = info.get(META_KEY).ok_or_else(|| bad(format!("no \"{META_KEY}\" metadata entry")))?;
        let meta: serde_json::Value =
            serde_json::from_str(meta).map_err(|e| bad(format!("\"{META_KEY}\" metadata is not JSON: {e}")))?;
        let order: Option<Vec<String>> = match info.get(ORDER_KEY) {
            Some(o) => Some(serde_json::from_str(o).map_err(|e| bad(format!("\"{ORDER_KEY}\" metadata: {e}")))?),
            None => None,
        };
        (meta, order)
    };
    let mut by_name: HashMap<String, TensorView> = st.tensors().into_iter().collect();
    let names = match order {
        Some(o) => {
            if o.len() != by_name.len() || o.iter().any(|n| !by_name.contains_key(n)) {
                return Err(bad(format!("\"{ORDER_KEY}\" does not list the stored tensors")));
            }
            o
        }
        None => {
            let mut n: Vec<String> = by_name.keys().cloned().collect();
            n.sort();
            n
        }
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let view = by_name.remove(&name).expect("checked above");
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!("tensor {name} is {:?}, expected F32", view.dtype())));
        }
        let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let array = ArrayD::from_shape_vec(IxDyn(view.shape()), values)
            .map_err(|e| bad(format!("tensor {name}: shape {:?}: {e}", view.shape())))?;
        out.push((name, array));
    }
    Ok((out, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("trainer-ckpt-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn t(name: &str, shape: &[usize], values: Vec<f32>) -> Tensor {
        (name.into(), ArrayD::from_shape_vec(IxDyn(shape), values).unwrap())
    }

    fn sample() -> Vec<Tensor> {
        let special = vec![
            0.0,
            -0.0,
            f32::MIN_POSITIVE / 8.0, // subnormal
            -f32::from_bits(1),      // smallest negative subnormal
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x7fc0_1234), // NaN with a payload
            1.0 / 3.0,
        ];
        vec![
            t("z.last", &[2, 5], special),
            t("a.first", &[3], vec![1.5, -2.25, 1e-30]),
            t("scalar", &[], vec![7.0]),
            t("empty", &[0, 4], vec![]),
        ]
    }

    fn bits(t: &[Tensor]) -> Vec<(String, Vec<usize>, Vec<u32>)> {
        t.iter().map(|(n, a)| (n.clone(), a.shape().to_vec(), a.iter().map(|x| x.to_bits()).collect())).collect()
    }

    #[test]
    fn round_trip_is_bitwise_and_leaves_no_temp_file() {
        let dir = temp_dir("rt");
        let path = dir.join("ckpt.safetensors");
        let meta = serde_json::json!({"step": 120, "config": {"d": 64, "name": "tiny"}, "loss": [1.5, 0.25]});
        let tensors = sample();
        save(&path, &tensors, &meta).unwrap();
        let (back, meta2) = load(&path).unwrap();
        // Same order as saved (not sorted by name), same bits.
        assert_eq!(bits(&back), bits(&tensors));
        assert_eq!(meta2, meta);
        // Overwriting replaces the file atomically.
        let tensors2 = vec![t("w", &[2], vec![3.0f32, 4.0])];
        save(&path, &tensors2, &serde_json::json!(null)).unwrap();
        let (back2, meta3) = load(&path).unwrap();
        assert_eq!(bits(&back2), bits(&tensors2));
        assert_eq!(meta3, serde_json::Value::Null);
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["ckpt.safetensors"], "no temporary file left behind");
        // A view with another memory order (a transpose) is written in its logical row-major
        // order: [[0, 1, 2], [3, 4, 5]] transposed is [[0, 3], [1, 4], [2, 5]].
        let tr = t("m", &[2, 3], (0..6).map(|i| i as f32).collect()).1.reversed_axes();
        save(&path, &[("m".into(), tr)], &serde_json::json!(null)).unwrap();
        let (back3, _) = load(&path).unwrap();
        assert_eq!(back3[0].1.shape(), [3, 2]);
        assert_eq!(back3[0].1.iter().copied().collect::<Vec<f32>>(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_or_missing_files_give_errors() {
        let dir = temp_dir("bad");
        let path = dir.join("c.safetensors");
        save(&path, &sample(), &serde_json::json!({"a": 1})).unwrap();
        let full = fs::read(&path).unwrap();
        // Every truncation is an error naming the file, never a panic.
        for cut in [0, 4, 8, 20, full.len() / 2, full.len() - 1] {
            fs::write(&path, &full[..cut]).unwrap();
            let e = load(&path).unwrap_err();
            assert!(e.contains("c.safetensors") && e.contains("corrupt"), "cut {cut}: {e}");
        }
        // Garbage header.
        let mut junk = full.clone();
        junk[10] = b'\xff';
        fs::write(&path, &junk).unwrap();
        assert!(load(&path).unwrap_err().contains("corrupt"));
        // Missing file.
        let e = load(&dir.join("missing.safetensors")).unwrap_err();
        assert!(e.contains("missing.safetensors"), "{e}");
        // Saving into a missing folder fails cleanly.
        let e = save(&dir.join("no/such/dir/x.safetensors"), &sample(), &serde_json::json!({})).unwrap_err();
        assert!(e.contains("x.safetensors"), "{e}");
        // Repeated names are refused before writing.
        let twice = vec![t("w", &[1], vec![1.0]), t("w", &[1], vec![2.0])];
        assert!(save(&path, &twice, &serde_json::json!({})).unwrap_err().contains("repeated"));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A safetensors file from another writer (no trainer metadata) is
    /// refused with a clear message.
    #[test]
    fn foreign_file_without_metadata_is_refused() {
        let dir = temp_dir("foreign");
        let path = dir.join("f.safetensors");
        let data = 1.0f32.to_le_bytes();
        let view = TensorView::new(Dtype::F32, vec![1], &data).unwrap();
        fs::write(&path, safetensors::serialize([("x", view)], None).unwrap()).unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.contains("no metadata"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
