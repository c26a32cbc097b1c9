//! The accelerator backend driver: finds and loads the CUDA backend library at run time and
//! drives it through [`Backend`].
//!
//! Where the library is looked for (the first that exists):
//! 1. `$HOST_CUDA_BACKEND`: the library file, or a folder holding it;
//! 2. next to the running executable (`target/release/` for a built `host`);
//! 3. the executable's parent folder (test binaries live in `target/release/deps/`).
//!
//! The file is `libbackend_cuda.so` (`backend_cuda.dll`, `libbackend_cuda.dylib`), built by
//! `cargo build --release` with the rest of the workspace; building it needs no CUDA toolkit.
//! Without a GPU every failure is one line starting `device cuda: ` that says what is missing.
//!
//! The driver mirrors [`Trainer`](crate::Trainer) step for step: same initial parameters
//! ([`init_params`]), same checkpoint tensors, same learning rate, clipping and compressor
//! seeds; weight formats run on the host (device-to-host copy of the master weights, the
//! format's compress and backward, host-to-device copies), so every plugin works unchanged.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use abi_stable::library::{LibraryError, lib_header_from_path};
use abi_stable::std_types::{RResult, RSlice, RSliceMut, RStr, RString};

use crate::accel_abi::{ACCEL_ABI_VERSION, AccelModRef, FfiSessionBox, buf};
use crate::backend::{Backend, MatmulPrecision, State, Tensors};
use crate::model::{ModelConfig, ParamLayout};
use crate::optim;
use crate::train::{
    SEED_EVAL, StepStats, TrainOptions, check_step_tokens, check_tokens, compress_weights, init_params, pack_state,
    unpack_state, weight_backward,
};

/// Environment variable naming the CUDA backend library (a file, or a folder holding it).
pub const LIB_ENV: &str = "HOST_CUDA_BACKEND";

/// File name of the CUDA backend library on this platform.
pub fn lib_file_name() -> String {
    format!("{}backend_cuda{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

/// Where the library is looked for when `$HOST_CUDA_BACKEND` is not set.
fn default_places() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        out.push(dir.join(lib_file_name()));
        if let Some(up) = dir.parent() {
            out.push(up.join(lib_file_name()));
        }
    }
    out
}

/// The library file to load: `explicit`, else `$HOST_CUDA_BACKEND`, else the first of the
/// default places that exists. The error is one line naming where it looked.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let (given, from) = match explicit {
        Some(p) => (Some(p.to_path_buf()), "the given path"),
        None => (std::env::var_os(LIB_ENV).filter(|v| !v.is_empty()).map(PathBuf::from), LIB_ENV),
    };
    if let Some(p) = given {
        let file = if p.is_dir() { p.join(lib_file_name()) } else { p.clone() };
        return if file.is_file() {
            Ok(file)
        } else {
            Err(format!(
                "device cuda: {from} points to {}, which does not exist (build the library with `cargo build --release`)",
                file.display()
            ))
        };
    }
    let places = default_places();
    places.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let looked: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
        format!(
            "device cuda: the CUDA backend library is not built or not found (looked for {}; build it with `cargo build --release`, or set {LIB_ENV} to its path)",
            looked.join(" and ")
        )
    })
}

/// A loaded accelerator library (never unloaded).
#[derive(Clone, Copy)]
pub struct AccelLib {
    module: AccelModRef,
}

fn first_line(s: &str) -> String {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

/// Calls into the library, turning a panic that escaped its own guard into an error.
fn call<T>(what: &str, f: impl FnOnce() -> RResult<T, RString>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(RResult::ROk(v)) => Ok(v),
        Ok(RResult::RErr(e)) => Err(format!("device cuda: {}", e.as_str())),
        Err(_) => Err(format!("device cuda: the backend library panicked while {what}")),
    }
}

impl AccelLib {
    /// Loads the library at `path` (once per path per process).
    pub fn load(path: &Path) -> Result<AccelLib, String> {
        static LOADED: Mutex<Option<HashMap<PathBuf, AccelLib>>> = Mutex::new(None);
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        let map = loaded.get_or_insert_with(HashMap::new);
        if let Some(l) = map.get(path) {
            return Ok(*l);
        }
        let shown = path.display();
        let header = lib_header_from_path(path).map_err(|e| match e {
            LibraryError::OpenError { err, .. } => {
                format!("device cuda: cannot open the backend library {shown}: {}", first_line(&err.to_string()))
            }
            LibraryError::GetSymbolError { .. } => {
                format!("device cuda: {shown} is not an accelerator backend library (no abi_stable export)")
            }
            other => format!("device cuda: {shown}: {}", first_line(&other.to_string())),
        })?;
        let module = header.init_root_module::<AccelModRef>().map_err(|e| match e {
            LibraryError::IncompatibleVersionNumber { .. }
            | LibraryError::AbiInstability(_)
            | LibraryError::InvalidAbiHeader(_)
            | LibraryError::InvalidCAbi { .. } => format!(
                "device cuda: {shown} was built against accelerator interface {} but this program has {ACCEL_ABI_VERSION}: rebuild it with `cargo build --release`",
                header.version_strings().version.as_str()
            ),
            other => format!("device cuda: {shown}: {}", first_line(&other.to_string())),
        })?;
        let lib = AccelLib { module };
        map.insert(path.to_path_buf(), lib);
        Ok(lib)
    }

    /// The library's one-line version.
    pub fn version(&self) -> Result<String, String> {
        call("reporting its version", || RResult::ROk((self.module.version())())).map(String::from)
    }

    /// Opens the driver and the device: the device name, or one line saying what is missing.
    pub fn probe(&self) -> Result<String, String> {
        call("probing the device", || (self.module.probe())()).map(String::from)
    }

    /// Runs every kernel against its CPU reference on the device (see [`AccelMod`](crate::accel_abi::AccelMod)).
    pub fn check_kernels(&self) -> Result<String, String> {
        call("checking the kernels", || (self.module.check_kernels())()).map(String::from)
    }

    /// Compiles every kernel with NVRTC for `arch` (no GPU needed).
    pub fn compile_kernels(&self, arch: &str) -> Result<String, String> {
        call("compiling the kernels", || (self.module.compile_kernels())(RStr::from(arch))).map(String::from)
    }

    fn open(&self, cfg: &ModelConfig, options: &serde_json::Value) -> Result<FfiSessionBox, String> {
        let c = serde_json::to_string(cfg).map_err(|e| e.to_string())?;
        let o = options.to_string();
        call("opening a session", || (self.module.open())(RStr::from(c.as_str()), RStr::from(o.as_str())))
    }
}

/// Locates, loads and probes the CUDA backend: the library and the device name.
pub fn open_cuda(explicit: Option<&Path>) -> Result<(AccelLib, String), String> {
    let path = locate(explicit)?;
    let lib = AccelLib::load(&path)?;
    let name = lib.probe()?;
    Ok((lib, name))
}

/// Options of the accelerator backend beyond [`TrainOptions`], handed to the library's `open`
/// as a JSON object ([`AccelOptions::to_json`], read back by [`AccelOptions::from_json`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccelOptions {
    /// Precision of the linear layers' matrix products (fp32 data and accumulation always).
    pub matmul: MatmulPrecision,
    /// Offer the weight format to the library for its native kernels (`open`'s `weights`
    /// option) when the format names itself ([`Compressor::native`](crate::compress::Compressor::native)).
    /// Off by default until `tools/gpu/check.sh` has compared them on a GPU; on with
    /// [`NATIVE_ENV`]` = 1`. Not part of [`to_json`](Self::to_json): the trainer's choice.
    pub native_weights: bool,
}

/// `HOST_CUDA_NATIVE_FORMATS=1` lets a CUDA run compress its weights with the library's native
/// kernels of the built-in formats instead of the plugin on the host.
pub const NATIVE_ENV: &str = "HOST_CUDA_NATIVE_FORMATS";

/// Whether [`NATIVE_ENV`] asks for native weight kernels.
pub fn native_weights_from_env() -> bool {
    std::env::var(NATIVE_ENV).is_ok_and(|v| v.trim() == "1")
}

impl AccelOptions {
    /// The options object of `open`: `{"matmul": "fp32" | "tf32" | "bf16"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "matmul": self.matmul.name() })
    }

    /// Reads an options object (the library side of [`to_json`](Self::to_json)). `matmul` names
    /// the precision; without it, interface 0.1's `tf32` (bool) is still understood; neither
    /// means fp32. An unknown precision or a wrongly typed value is a one-line error, so a
    /// library never silently computes at another precision than the run records.
    pub fn from_json(v: &serde_json::Value) -> Result<AccelOptions, String> {
        let obj = v.as_object().ok_or_else(|| format!("options must be a JSON object, not {v}"))?;
        let matmul = match (obj.get("matmul"), obj.get("tf32")) {
            (Some(serde_json::Value::String(s)), _) => MatmulPrecision::parse(s)?,
            (Some(other), _) => return Err(format!("option matmul must be a string, not {other}")),
            (None, Some(serde_json::Value::Bool(true))) => MatmulPrecision::Tf32,
            (None, Some(serde_json::Value::Bool(false)) | None) => MatmulPrecision::Fp32,
            (None, Some(other)) => return Err(format!("option tf32 must be true or false, not {other}")),
        };
        Ok(AccelOptions { matmul, native_weights: false })
    }
}

/// The key of `open`'s options that offers the weight format (written by [`AccelTrainer::new`]).
const WEIGHTS_KEY: &str = "weights";

/// The weight format `open`'s options offer, `(kind, parameter table as TOML)`, if any (the
/// library side of the `weights` option).
pub fn weights_from_json(v: &serde_json::Value) -> Option<(String, String)> {
    let w = &v[WEIGHTS_KEY];
    Some((w["kind"].as_str()?.to_string(), w["params"].as_str()?.to_string()))
}

/// A run on an accelerator library, driven like [`Trainer`](crate::Trainer).
pub struct AccelTrainer {
    session: FfiSessionBox,
    device_name: String,
    cfg: ModelConfig,
    opts: TrainOptions,
    layout: ParamLayout,
    step: u64,
    /// Host copies for weight formats: master weights, compressed weights, masks, gradients.
    host_params: Vec<f32>,
    host_eff: Vec<f32>,
    host_mask: Vec<f32>,
    host_grads: Vec<f32>,
    /// What the library calls its weight kernels when it compresses the weights itself
    /// ([`FfiSession::compress_weights`]).
    weight_kernels: Option<String>,
    losses: Vec<f32>,
}

fn ok<T>(r: RResult<T, RString>) -> Result<T, String> {
    match r {
        RResult::ROk(v) => Ok(v),
        RResult::RErr(e) => Err(format!("device cuda: {}", e.as_str())),
    }
}

impl AccelTrainer {
    /// A run of `cfg` on `lib`'s device, fresh (parameters from `opts.seed`, as on CPU) or
    /// resumed from `state`.
    pub fn new(
        lib: AccelLib,
        device_name: String,
        cfg: ModelConfig,
        opts: TrainOptions,
        accel: AccelOptions,
        state: Option<State>,
    ) -> Result<AccelTrainer, String> {
        cfg.validate()?;
        if opts.act.is_some() {
            return Err("device cuda: activation formats have no GPU kernel yet; train them with --device cpu".into());
        }
        let layout = ParamLayout::new(&cfg);
        let n = layout.total;
        let (params, m, v, step) = match state {
            None => (init_params(&cfg, &layout, opts.seed), vec![0.0; n], vec![0.0; n], 0),
            Some((tensors, step)) => {
                let (mut p, mut m, mut v) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
                unpack_state(&layout, tensors, &mut p, &mut m, &mut v)?;
                (p, m, v, step)
            }
        };
        // The library holds one micro-batch: its buffers are sized by the config's batch, and
        // sums the micro-batches' gradients itself (`accumulate`).
        let lib_cfg = ModelConfig { batch: cfg.micro_batch(), accum: 1, ..cfg.clone() };
        let mut options = accel.to_json();
        if accel.native_weights
            && let Some((kind, params)) = opts.weight.as_deref().and_then(|c| c.native())
        {
            options[WEIGHTS_KEY] = serde_json::json!({ "kind": kind, "params": params });
        }
        let mut session = lib.open(&lib_cfg, &options)?;
        let weight_kernels = Some(session.weight_format().to_string()).filter(|w| !w.is_empty());
        for (which, data) in [(buf::PARAMS, &params), (buf::ADAM_M, &m), (buf::ADAM_V, &v)] {
            ok(session.write(which, 0, RSlice::from_slice(data)))?;
        }
        let has_w = opts.weight.is_some() && weight_kernels.is_none();
        let big = |on: bool| if on { vec![0.0; n] } else { Vec::new() };
        Ok(AccelTrainer {
            session,
            device_name,
            losses: vec![0.0; cfg.batch * cfg.ctx],
            cfg,
            opts,
            layout,
            step,
            host_params: big(has_w),
            host_eff: big(has_w),
            host_mask: big(has_w),
            host_grads: big(has_w),
            weight_kernels,
        })
    }

    /// The device, as the library names it.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// With a weight format: compresses the master weights on the host and uploads them as the
    /// effective parameters. Returns whether the forward pass uses them.
    fn compress_weights(&mut self, step_seed: u64) -> Result<bool, String> {
        let Some(comp) = self.opts.weight.as_deref() else { return Ok(false) };
        if self.weight_kernels.is_some() {
            // Native formats are deterministic: the step's seed does not enter.
            ok(self.session.compress_weights())?;
            return Ok(true);
        }
        ok(self.session.read(buf::PARAMS, 0, RSliceMut::from_mut_slice(&mut self.host_params)))?;
        compress_weights(
            comp,
            self.opts.seed,
            &self.layout,
            &self.host_params,
            &mut self.host_eff,
            &mut self.host_mask,
            step_seed,
        )?;
        ok(self.session.write(buf::EFF, 0, RSlice::from_slice(&self.host_eff)))?;
        Ok(true)
    }

    /// Mean loss of a forward pass over `tokens`, summed in f64 in row order as on CPU.
    fn forward(&mut self, tokens: &[u8], use_eff: bool) -> Result<f64, String> {
        let rows = tokens.len() / (self.cfg.ctx + 1) * self.cfg.ctx;
        let losses = &mut self.losses[..rows];
        ok(self.session.forward(RSlice::from_slice(tokens), use_eff, RSliceMut::from_mut_slice(losses)))?;
        let sum: f64 = losses.iter().map(|&x| x as f64).sum();
        Ok(sum / rows as f64)
    }
}

impl Backend for AccelTrainer {
    fn device(&self) -> &str {
        "cuda"
    }

    fn weight_kernels(&self) -> Option<&str> {
        self.weight_kernels.as_deref()
    }

    fn step(&mut self, tokens: &[u8]) -> Result<StepStats, String> {
        check_step_tokens(&self.cfg, tokens)?;
        let step = self.step;
        let use_eff = self.compress_weights(step)?;
        let accum = self.cfg.accum;
        let mut loss = 0.0f64;
        // Micro-batches as on CPU (`Trainer::step`): gradients summed on the device in
        // micro-batch order, then averaged (one pass when accum is 1).
        let inv = 1.0 / accum as f32;
        for (k, micro) in tokens.chunks(self.cfg.micro_batch() * (self.cfg.ctx + 1)).enumerate() {
            let l = self.forward(micro, use_eff)?;
            if !l.is_finite() {
                return Err(format!("loss became NaN at step {step}; lower the learning rate or check the format"));
            }
            loss += l;
            ok(self.session.backward())?;
            if accum > 1 {
                ok(self.session.accumulate(k as u32, accum as u32, inv))?;
            }
        }
        if accum > 1 {
            loss /= accum as f64;
        }
        if self.weight_kernels.is_some() {
            ok(self.session.weight_backward())?;
        } else if let Some(comp) = self.opts.weight.as_deref() {
            ok(self.session.read(buf::GRADS, 0, RSliceMut::from_mut_slice(&mut self.host_grads)))?;
            weight_backward(
                comp,
                self.opts.seed,
                &self.layout,
                &self.host_params,
                &self.host_mask,
                &mut self.host_grads,
                step,
            )?;
            ok(self.session.write(buf::GRADS, 0, RSlice::from_slice(&self.host_grads)))?;
        }
        let norm = ok(self.session.grad_norm())?;
        if !norm.is_finite() {
            return Err(format!("gradient became NaN at step {step}; lower the learning rate or check the format"));
        }
        let scale = if norm > optim::CLIP_NORM { (optim::CLIP_NORM / (norm + 1e-6)) as f32 } else { 1.0 };
        let lr = optim::lr_at(step, self.opts.total_steps, self.cfg.lr);
        ok(self.session.adamw(lr, step + 1, scale))?;
        self.step += 1;
        Ok(StepStats { loss: loss as f32, grad_norm: norm as f32, lr })
    }

    fn eval_loss(&mut self, tokens: &[u8]) -> Result<f32, String> {
        check_tokens(&self.cfg, tokens, "evaluation")?;
        let row = self.cfg.ctx + 1;
        let use_eff = self.compress_weights(self.step | SEED_EVAL)?;
        let mut total = 0.0f64;
        let mut n = 0usize;
        for chunk in tokens.chunks(self.cfg.micro_batch() * row) {
            let rows = chunk.len() / row * self.cfg.ctx;
            total += self.forward(chunk, use_eff)? * rows as f64;
            n += rows;
        }
        let loss = total / n as f64;
        if !loss.is_finite() {
            return Err(format!(
                "evaluation loss became NaN after step {}; lower the learning rate or check the format",
                self.step
            ));
        }
        Ok(loss as f32)
    }

    fn step_index(&self) -> u64 {
        self.step
    }

    fn state(&self) -> Result<Tensors, String> {
        let n = self.layout.total;
        let (mut p, mut m, mut v) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for (which, dst) in [(buf::PARAMS, &mut p), (buf::ADAM_M, &mut m), (buf::ADAM_V, &mut v)] {
            ok(self.session.read(which, 0, RSliceMut::from_mut_slice(dst)))?;
        }
        Ok(pack_state(&self.layout, &p, &m, &v))
    }
}

#[cfg(test)]
#[path = "accel_reference.rs"]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_name_the_matmul_precision_and_read_back() {
        // What the library's `open` receives, exactly.
        let text = |m| AccelOptions { matmul: m, native_weights: false }.to_json().to_string();
        assert_eq!(text(MatmulPrecision::Fp32), r#"{"matmul":"fp32"}"#);
        assert_eq!(text(MatmulPrecision::Tf32), r#"{"matmul":"tf32"}"#);
        assert_eq!(text(MatmulPrecision::Bf16), r#"{"matmul":"bf16"}"#);
        assert_eq!(AccelOptions::default().matmul, MatmulPrecision::Fp32);
        for m in MatmulPrecision::ALL {
            let o = AccelOptions { matmul: m, native_weights: false };
            assert_eq!(AccelOptions::from_json(&o.to_json()).unwrap(), o);
        }
    }

    #[test]
    fn options_of_interface_0_1_still_read_and_bad_ones_are_one_line() {
        let read = |v: serde_json::Value| AccelOptions::from_json(&v).map(|o| o.matmul);
        assert_eq!(read(json!({"tf32": true})), Ok(MatmulPrecision::Tf32));
        assert_eq!(read(json!({"tf32": false})), Ok(MatmulPrecision::Fp32));
        assert_eq!(read(json!({})), Ok(MatmulPrecision::Fp32));
        // `matmul` wins over the old key.
        assert_eq!(read(json!({"matmul": "bf16", "tf32": true})), Ok(MatmulPrecision::Bf16));
        assert_eq!(
            read(json!({"matmul": "fp16"})),
            Err("matmul precision `fp16`: expected `fp32`, `tf32` or `bf16`".to_string())
        );
        assert_eq!(read(json!({"matmul": 16})), Err("option matmul must be a string, not 16".to_string()));
        assert_eq!(read(json!({"tf32": "yes"})), Err(r#"option tf32 must be true or false, not "yes""#.to_string()));
        assert_eq!(read(json!([1])), Err("options must be a JSON object, not [1]".to_string()));
    }
}
