//! Real tensors from `.npy` and `.safetensors` files, for `host apply` and
//! `host rank --dist file:...`.
//!
//! Reading: `.safetensors` through Hugging Face's `safetensors` crate (every
//! tensor, in file order), `.npy` through `npyz` (one tensor, named after the
//! file stem; C or Fortran order, either endianness). Floating-point dtypes are
//! converted to f32: F32, F16, BF16 and F64 (F64 is rounded). Anything else
//! (integers, bool, FP8, complex) is rejected per tensor with a message that
//! names the file, the tensor and the dtype.
//!
//! Errors are of two levels: a file that cannot be read or parsed at all
//! (missing, truncated, not the container it claims) fails the whole read;
//! a tensor that cannot be used (dtype, non-finite values, too few dimensions)
//! fails only that tensor ([`Read::tensors`] holds one `Result` per tensor),
//! so the others can still be used.
//!
//! Formats work on 2-D tensors: [`Tensor::matrix`] views an N-D tensor
//! (N >= 2) as `[product of the leading dimensions, last dimension]` and
//! rejects 0-D and 1-D tensors, empty tensors, and NaN or infinite values.
//!
//! Writing: F32 only, `.npy` (one tensor) or `.safetensors` (any number).

use ndarray::{ArrayD, ArrayView2, ArrayViewD, IxDyn, ShapeBuilder};
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sdk::Shape;

/// The two supported containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// NumPy `.npy`: one array.
    Npy,
    /// Hugging Face `.safetensors`: named tensors.
    Safetensors,
}

impl Container {
    /// The container a path's extension names.
    pub fn of(path: &Path) -> Result<Container, String> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("npy") => Ok(Container::Npy),
            Some("safetensors") => Ok(Container::Safetensors),
            _ => Err(format!("`{}`: unknown tensor file type; use a .npy or .safetensors file", path.display())),
        }
    }
}

/// One tensor, converted to f32, in C (row-major) order. The values stay one flat buffer (a
/// format takes a `&[f32]` across the plugin ABI); [`Tensor::array`] and [`Tensor::matrix_view`]
/// are ndarray views over it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Its name in the file (the file stem for `.npy`).
    pub name: String,
    /// Its dimensions as stored.
    pub shape: Vec<usize>,
    /// Its values.
    pub data: Vec<f32>,
}

impl Tensor {
    /// The 2-D shape a format sees: `[product of leading dims, last dim]`.
    /// Fails (with a message naming `file` and the tensor) on 0-D and 1-D
    /// tensors, empty tensors, and NaN or infinite values.
    pub fn matrix(&self, file: &Path) -> Result<Shape, String> {
        let what = format!("`{}`: tensor `{}`", file.display(), self.name);
        if self.shape.len() < 2 {
            return Err(format!(
                "{what} has {}-D shape {:?}; formats need a 2-D (rows x cols) tensor: reshape it \
                 (e.g. to [1, n]) or pick another with --tensor",
                self.shape.len(),
                self.shape
            ));
        }
        let cols = *self.shape.last().unwrap_or(&0);
        let rows = self.shape[..self.shape.len() - 1].iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let rows = rows.filter(|r| r.checked_mul(cols) == Some(self.data.len())).ok_or_else(|| {
            format!("{what}: shape {:?} does not match its {} values; the file is damaged", self.shape, self.data.len())
        })?;
        if rows == 0 || cols == 0 {
            return Err(format!("{what} is empty (shape {:?})", self.shape));
        }
        if let Some(i) = self.data.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "{what} holds {} at element {i} (row {}, column {}); formats need finite values: clean the \
                 tensor or pick another with --tensor",
                self.data[i],
                i / cols,
                i % cols
            ));
        }
        Ok(Shape::new(rows, cols))
    }

    /// The tensor as an n-dimensional array view over [`Tensor::data`], with its shape as stored.
    pub fn array(&self) -> Result<ArrayViewD<'_, f32>, String> {
        ArrayViewD::from_shape(IxDyn(&self.shape), &self.data).map_err(|e| {
            format!("tensor `{}`: shape {:?} does not fit {} values ({e})", self.name, self.shape, self.data.len())
        })
    }

    /// The 2-D view a format sees (`[product of leading dims, last dim]`), checked as by
    /// [`Tensor::matrix`].
    pub fn matrix_view(&self, file: &Path) -> Result<ArrayView2<'_, f32>, String> {
        let s = self.matrix(file)?;
        self.array()?
            .into_shape_with_order((s.rows, s.cols))
            .map_err(|e| format!("`{}`: tensor `{}`: {e}", file.display(), self.name))
    }
}

/// One tensor of a file: its name and the tensor, or why it cannot be used.
pub type Entry = (String, Result<Tensor, String>);

/// What a file held.
#[derive(Debug)]
pub struct Read {
    /// Its container.
    pub container: Container,
    /// One entry per tensor, in file order: its name and the tensor, or why
    /// it cannot be read (the message names the file and the tensor).
    pub tensors: Vec<Entry>,
}

/// Reads every tensor of a `.npy` or `.safetensors` file.
pub fn read(path: &Path) -> Result<Read, String> {
    Container::of(path)?;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    read_bytes(path, &bytes)
}

/// Reads every tensor of the contents `bytes` of file `path` (whose
/// extension names the container; the path also names the file in errors).
pub fn read_bytes(path: &Path, bytes: &[u8]) -> Result<Read, String> {
    let container = Container::of(path)?;
    let tensors = match container {
        Container::Npy => vec![read_npy(path, bytes)?],
        Container::Safetensors => read_safetensors(path, bytes)?,
    };
    Ok(Read { container, tensors })
}

fn npy_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "tensor".into())
}

/// Reads the one array of a `.npy` file. The outer error is file-level, the
/// inner one tensor-level (an unsupported dtype).
fn read_npy(path: &Path, bytes: &[u8]) -> Result<Entry, String> {
    use npyz::{DType, TypeChar};
    let name = npy_name(path);
    let file_err =
        |e: std::io::Error| format!("`{}`: not a readable .npy file ({e}); re-save it with numpy.save", path.display());
    // npyz allocates the header, then the data, from the sizes the file
    // states, before reading them: check both against the bytes there are.
    let damaged =
        |what: String| format!("`{}`: not a readable .npy file ({what}); is it truncated or damaged?", path.display());
    let data_start = npy_data_start(bytes).map_err(damaged)?;
    let npy = npyz::NpyFile::new(bytes).map_err(file_err)?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| usize::try_from(d).unwrap_or(usize::MAX)).collect();
    let fortran = npy.order() == npyz::Order::Fortran;
    let dtype = npy.dtype();
    if let DType::Plain(ts) = &dtype {
        let size = usize::try_from(ts.size_field()).ok();
        let need = size.and_then(|s| shape.iter().try_fold(s, |n, &d| n.checked_mul(d)));
        let have = bytes.len() - data_start.min(bytes.len());
        if need.is_none_or(|n| n > have) {
            return Err(damaged(format!(
                "shape {shape:?} of {}-byte values needs {} bytes of data, the file holds {have}",
                ts.size_field(),
                need.map_or("more than 2^64".to_string(), |n| n.to_string())
            )));
        }
    }
    let data: Vec<f32> = match &dtype {
        DType::Plain(ts) if ts.type_char() == TypeChar::Float => match ts.size_field() {
            4 => npy.into_vec::<f32>().map_err(file_err)?,
            2 => npy.into_vec::<half::f16>().map_err(file_err)?.into_iter().map(f32::from).collect(),
            8 => npy.into_vec::<f64>().map_err(file_err)?.into_iter().map(|v| v as f32).collect(),
            _ => return Ok((name.clone(), Err(unsupported(path, &name, &ts.to_string())))),
        },
        other => return Ok((name.clone(), Err(unsupported(path, &name, &other.descr())))),
    };
    let n: usize = shape.iter().product();
    if data.len() != n {
        return Err(format!(
            "`{}`: holds {} values for shape {shape:?}; the file is damaged",
            path.display(),
            data.len()
        ));
    }
    // Column-major (Fortran) data: ndarray reads it with Fortran strides and iterates in logical
    // (C) order.
    let data = if fortran && shape.len() > 1 {
        let a = ArrayD::from_shape_vec(IxDyn(&shape).f(), data)
            .map_err(|e| format!("`{}`: shape {shape:?}: {e}; the file is damaged", path.display()))?;
        a.iter().copied().collect()
    } else {
        data
    };
    Ok((name.clone(), Ok(Tensor { name, shape, data })))
}

/// Where the data of a `.npy` file starts (after the magic, the version, the
/// header length and the header), or why the file cannot hold it. Versions
/// other than 1, 2 and 3 are left to npyz to refuse.
fn npy_data_start(bytes: &[u8]) -> Result<usize, String> {
    let (len_bytes, version) = match bytes.get(6) {
        Some(1) => (2, 1),
        Some(2 | 3) => (4, bytes[6]),
        _ => return Ok(0),
    };
    let field = bytes.get(8..8 + len_bytes).ok_or("the header length is cut off")?;
    let header = field.iter().rev().fold(0usize, |n, &b| (n << 8) | b as usize);
    let start = 8 + len_bytes + header;
    if start > bytes.len() {
        return Err(format!(
            "version {version} header of {header} bytes, but the file has {} bytes after the preamble",
            bytes.len() - 8 - len_bytes
        ));
    }
    Ok(start)
}

fn unsupported(path: &Path, name: &str, dtype: &str) -> String {
    format!(
        "`{}`: tensor `{name}` has dtype {dtype}, which is not supported (F32, F16, BF16 or F64 expected); \
         convert it to float32",
        path.display()
    )
}

fn read_safetensors(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let file_err = |e: safetensors::SafeTensorError| {
        format!("`{}`: not a readable .safetensors file ({e}); is it truncated or damaged?", path.display())
    };
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(file_err)?;
    let st = SafeTensors::deserialize(bytes).map_err(file_err)?;
    let mut out = Vec::new();
    for name in meta.offset_keys() {
        let view = st.tensor(&name).map_err(file_err)?;
        let t = convert_view(path, &name, &view);
        out.push((name, t));
    }
    Ok(out)
}

fn convert_view(path: &Path, name: &str, view: &TensorView<'_>) -> Result<Tensor, String> {
    let b = view.data();
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        other => return Err(unsupported(path, name, &format!("{other:?}"))),
    };
    Ok(Tensor { name: name.to_string(), shape: view.shape().to_vec(), data })
}

/// Writes one F32 tensor as `.npy` (C order).
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), String> {
    use npyz::WriterBuilder;
    let err = |e: std::io::Error| format!("cannot write `{}`: {e}", path.display());
    let file = std::fs::File::create(path).map_err(err)?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(err)?;
    w.extend(data.iter().copied()).map_err(err)?;
    w.finish().map_err(err)
}

/// Writes F32 tensors as `.safetensors`.
pub fn write_safetensors(path: &Path, tensors: &[Tensor]) -> Result<(), String> {
    let err = |e: safetensors::SafeTensorError| format!("cannot write `{}`: {e}", path.display());
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| TensorView::new(Dtype::F32, t.shape.clone(), b).map(|v| (t.name.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    safetensors::serialize_to_file(views, None, path).map_err(err)
}

/// Writes tensors in the container `path`'s extension names (`.npy`: exactly one).
pub fn write(path: &Path, tensors: &[Tensor]) -> Result<(), String> {
    match Container::of(path)? {
        Container::Safetensors => write_safetensors(path, tensors),
        Container::Npy => match tensors {
            [t] => write_npy(path, &t.shape, &t.data),
            _ => Err(format!(
                "`{}`: a .npy file holds one tensor, not {}; select one with --tensor or write .safetensors",
                path.display(),
                tensors.len()
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path `name` in a fresh folder, removed when the returned guard drops.
    fn tmp(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let guard = tempfile::Builder::new().prefix("host-tensorio-").tempdir().unwrap();
        let path = guard.path().join(name);
        (guard, path)
    }

    fn tensor(name: &str, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect(),
        }
    }

    /// Writes a safetensors file with raw (dtype, shape, bytes) entries.
    fn write_raw(path: &Path, entries: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, TensorView<'_>)> =
            entries.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        safetensors::serialize_to_file(views, None, path).unwrap();
    }

    /// Length fields that promise more than the file holds (found by the
    /// `npy` fuzz target: npyz allocated the stated header size, up to 4 GiB,
    /// before reading it) and shapes whose size overflows are one-line errors.
    #[test]
    fn damaged_npy_is_an_error_not_an_allocation() {
        let path = Path::new("x.npy");
        let npy = |version: u8, header: &str, data: &[u8]| {
            let mut b = b"\x93NUMPY".to_vec();
            b.extend([version, 0]);
            if version == 1 {
                b.extend((header.len() as u16).to_le_bytes());
            } else {
                b.extend((header.len() as u32).to_le_bytes());
            }
            b.extend(header.as_bytes());
            b.extend(data);
            b
        };
        let mut huge_header = b"\x93NUMPY\x02\x00\xff\xff\xff\xff{".to_vec();
        let e = read_bytes(path, &huge_header).unwrap_err();
        assert!(e.contains("x.npy") && e.contains("header of 4294967295 bytes") && e.contains("truncated"), "{e}");
        huge_header.truncate(10);
        assert!(read_bytes(path, &huge_header).unwrap_err().contains("header length is cut off"));
        let big = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }\n", &[0; 16]);
        let e = read_bytes(path, &big).unwrap_err();
        assert!(e.contains("needs 4000000000000000000 bytes of data, the file holds 16"), "{e}");
        let overflow =
            npy(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 0), }\n", &[]);
        assert!(read_bytes(path, &overflow).unwrap_err().contains("more than 2^64"));
        // A good file still reads.
        let ok = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }\n", &[0, 0, 128, 63, 0, 0, 0, 64]);
        let r = read_bytes(path, &ok).unwrap();
        assert_eq!(r.tensors[0].1.as_ref().unwrap().data, [1.0, 2.0]);
    }

    #[test]
    fn array_views_keep_the_shape_and_collapse_leading_dims() {
        let t = Tensor { name: "w".into(), shape: vec![2, 2, 3], data: (0..12).map(|i| i as f32).collect() };
        let a = t.array().unwrap();
        assert_eq!(a.shape(), &[2, 2, 3]);
        assert_eq!(a[[1, 0, 2]], 8.0); // 1*6 + 0*3 + 2
        let m = t.matrix_view(Path::new("f.npy")).unwrap();
        assert_eq!(m.dim(), (4, 3));
        assert_eq!(m[[3, 2]], 11.0);
        assert_eq!(m.row(2).to_vec(), vec![6.0, 7.0, 8.0]);
        let bad = Tensor { name: "w".into(), shape: vec![5, 3], data: vec![0.0; 12] };
        assert!(bad.array().unwrap_err().contains("tensor `w`: shape [5, 3] does not fit 12 values"));
        let one_d = Tensor { name: "b".into(), shape: vec![4], data: vec![1.0; 4] };
        assert!(one_d.matrix_view(Path::new("f.npy")).unwrap_err().contains("1-D shape"));
    }

    #[test]
    fn npy_round_trip_f32_and_f16_and_fortran() {
        let (_dir_p, p) = tmp("a.npy");
        let t = tensor("a", &[3, 5]);
        write(&p, std::slice::from_ref(&t)).unwrap();
        let r = read(&p).unwrap();
        assert_eq!(r.container, Container::Npy);
        assert_eq!(r.tensors.len(), 1);
        assert_eq!(r.tensors[0].1.as_ref().unwrap(), &t);
        assert_eq!(t.matrix(&p).unwrap(), Shape::new(3, 5));

        // f16, written through npyz: values convert exactly (they are f16 values).
        use npyz::WriterBuilder;
        let (_dir_p16, p16) = tmp("h.npy");
        let vals: Vec<half::f16> = t.data.iter().map(|&v| half::f16::from_f32(v)).collect();
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[3, 5])
            .writer(std::fs::File::create(&p16).unwrap())
            .begin_nd()
            .unwrap();
        w.extend(vals.iter().copied()).unwrap();
        w.finish().unwrap();
        let got = read(&p16).unwrap().tensors.remove(0).1.unwrap();
        assert_eq!(got.name, "h");
        assert_eq!(got.data, vals.iter().map(|v| v.to_f32()).collect::<Vec<_>>());

        // Fortran order: the same 2x3 matrix stored column by column.
        let (_dir_pf, pf) = tmp("f.npy");
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[2, 3])
            .order(npyz::Order::Fortran)
            .writer(std::fs::File::create(&pf).unwrap())
            .begin_nd()
            .unwrap();
        w.extend([1f32, 4.0, 2.0, 5.0, 3.0, 6.0]).unwrap();
        w.finish().unwrap();
        let got = read(&pf).unwrap().tensors.remove(0).1.unwrap();
        assert_eq!(got.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn safetensors_round_trip_f32_f16_bf16_in_file_order() {
        let (_dir_p, p) = tmp("a.safetensors");
        let ts = vec![tensor("w1", &[4, 8]), tensor("w0", &[2, 3, 4])];
        write(&p, &ts).unwrap();
        let r = read(&p).unwrap();
        assert_eq!(r.container, Container::Safetensors);
        let got: Vec<Tensor> = r.tensors.into_iter().map(|t| t.1.unwrap()).collect();
        let mut want = ts.clone();
        want.sort_by(|a, b| a.name.cmp(&b.name)); // the writer orders by name
        assert_eq!(got, want);
        assert_eq!(got[0].matrix(&p).unwrap(), Shape::new(6, 4));

        let src = tensor("x", &[4, 8]);
        let f16: Vec<u8> = src.data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let bf16: Vec<u8> = src.data.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
        let (_dir_p, p) = tmp("half.safetensors");
        write_raw(&p, &[("a16", Dtype::F16, vec![4, 8], f16), ("b16", Dtype::BF16, vec![4, 8], bf16)]);
        let got: Vec<Tensor> = read(&p).unwrap().tensors.into_iter().map(|t| t.1.unwrap()).collect();
        let a16: Vec<f32> = src.data.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        let b16: Vec<f32> = src.data.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect();
        let by_name = |n: &str| got.iter().find(|t| t.name == n).unwrap().data.clone();
        assert_eq!(by_name("a16"), a16);
        assert_eq!(by_name("b16"), b16);
        // BF16 keeps 8 significant bits: relative error below 2^-8.
        for (a, b) in src.data.iter().zip(&b16) {
            assert!((a - b).abs() <= a.abs() / 256.0, "{a} vs {b}");
        }
    }

    #[test]
    fn truncated_files_fail_whole_with_the_file_name() {
        let (_dir_p, p) = tmp("t.safetensors");
        write(&p, &[tensor("w", &[16, 16])]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let e = read(&p).unwrap_err();
        assert!(e.contains("t.safetensors") && e.contains("truncated"), "{e}");
        std::fs::write(&p, &bytes[..5]).unwrap();
        assert!(read(&p).unwrap_err().contains("t.safetensors"));

        let (_dir_p, p) = tmp("t.npy");
        write(&p, &[tensor("t", &[16, 16])]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let e = read(&p).unwrap_err();
        assert!(e.contains("t.npy") && e.contains("not a readable .npy"), "{e}");

        let e = read(&tmp("missing.npy").1).unwrap_err();
        assert!(e.contains("missing.npy"), "{e}");
        let e = read(&tmp("x.bin").1).unwrap_err();
        assert!(e.contains(".npy or .safetensors"), "{e}");
    }

    #[test]
    fn bad_tensors_fail_alone_with_file_and_tensor_names() {
        let (_dir_p, p) = tmp("mixed.safetensors");
        let good = tensor("good", &[2, 4]);
        let i64s: Vec<u8> = (0..8i64).flat_map(|v| v.to_le_bytes()).collect();
        let f32b = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut nan = good.data.clone();
        nan[5] = f32::NAN;
        write_raw(
            &p,
            &[
                ("good", Dtype::F32, vec![2, 4], f32b(&good.data)),
                ("ids", Dtype::I64, vec![2, 4], i64s),
                ("bias", Dtype::F32, vec![8], f32b(&good.data)),
                ("nan", Dtype::F32, vec![2, 4], f32b(&nan)),
                ("scalar", Dtype::F32, vec![], f32b(&[1.0])),
            ],
        );
        let r = read(&p).unwrap();
        let mut ok = Vec::new();
        let mut errors = Vec::new();
        for (_, t) in r.tensors {
            match t.and_then(|t| t.matrix(&p).map(|s| (t.name, s))) {
                Ok(v) => ok.push(v),
                Err(e) => errors.push(e),
            }
        }
        assert_eq!(ok, vec![("good".to_string(), Shape::new(2, 4))]);
        assert_eq!(errors.len(), 4, "{errors:?}");
        let find = |needle: &str| errors.iter().find(|e| e.contains(needle)).unwrap_or_else(|| panic!("{errors:?}"));
        assert!(find("`ids`").contains("dtype I64"));
        assert!(find("`bias`").contains("1-D shape [8]"));
        assert!(find("`nan`").contains("NaN at element 5 (row 1, column 1)"));
        assert!(find("`scalar`").contains("0-D"));
        assert!(errors.iter().all(|e| e.contains("mixed.safetensors")));
    }

    #[test]
    fn npy_integer_dtype_is_a_tensor_error() {
        let (_dir_p, p) = tmp("ints.npy");
        npyz::to_file_1d(&p, [1i64, 2, 3]).unwrap();
        let r = read(&p).unwrap();
        assert_eq!(r.tensors[0].0, "ints");
        let e = r.tensors[0].1.as_ref().unwrap_err();
        assert!(e.contains("ints.npy") && e.contains("`ints`") && e.contains("<i8"), "{e}");
    }

    #[test]
    fn npy_writer_refuses_several_tensors() {
        let e = write(&tmp("two.npy").1, &[tensor("a", &[2, 2]), tensor("b", &[2, 2])]).unwrap_err();
        assert!(e.contains("one tensor"), "{e}");
    }
}
