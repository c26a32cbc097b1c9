//! The stable ABI between the host and plugin libraries.
//!
//! This is the only module of the SDK that mentions `abi_stable` types.
//! Plugin authors never touch it: [`export_plugin!`](macro@crate::export_plugin)
//! generates the export, and the host uses [`Library`] and [`RemoteFormat`],
//! whose methods take and return plain Rust types.
//!
//! Facts this module is built around (measured, see DESIGN.md 5):
//! - each file is loaded through its own `LibHeader` (`RootModule::load_from_file`
//!   caches the first module and would return it for every later file);
//! - a panic crossing the boundary aborts the host, so every exported call
//!   runs under `catch_unwind` and returns an error instead;
//! - an interface or version mismatch is reported in one line, with the long
//!   layout report kept for `-v`.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Once;

use abi_stable::library::{LibHeader, LibraryError, RootModule, lib_header_from_path};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RResult, RSlice, RSliceMut, RStr, RString, RVec};
use abi_stable::{StableAbi, declare_root_module_statics, package_version_strings};

use crate::params::Table;
use crate::plugin::{FormatInfo, PluginInfo, Registry};
use crate::{Format, Grad, Shape, Tensor};

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
#[doc(hidden)]
pub struct PluginMod {
    /// The library's [`PluginInfo`], as TOML.
    pub describe: extern "C" fn() -> RResult<RString, RString>,
    /// Builds format `kind` from a TOML table of parameters.
    #[sabi(last_prefix_field)]
    pub instantiate: extern "C" fn(RStr<'_>, RStr<'_>) -> RResult<FfiFormatBox, RString>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "format_plugin";
    const NAME: &'static str = "format plugin";
    const VERSION_STRINGS: abi_stable::sabi_types::VersionStrings = package_version_strings!();
}

// `#[sabi_trait]` expands to impls that rustc 1.95 flags as
// `non_local_definitions`; the lint is about the macro's expansion, not about
// our code, so it is allowed on this one module only. Likewise clippy's
// `too_many_arguments` fires on the functions the macro generates for
// `compress` and `backward` (an allow on the method itself does not reach them).
#[allow(non_local_definitions, clippy::too_many_arguments)]
mod ffi {
    use abi_stable::sabi_trait;
    use abi_stable::std_types::{RResult, RSlice, RSliceMut, RString, RVec};

    /// A built format, as seen across the boundary.
    #[sabi_trait]
    pub trait FfiFormat: Send + Sync {
        /// [`FormatInfo`](crate::plugin::FormatInfo) for a `rows x cols` tensor, as TOML.
        fn info(&self, rows: u64, cols: u64) -> RResult<RString, RString>;
        /// Compresses `input` into `output` (and `mask` when `want_mask`).
        #[allow(clippy::too_many_arguments)]
        fn compress(
            &self,
            rows: u64,
            cols: u64,
            seed: u64,
            input: RSlice<'_, f32>,
            output: &mut RVec<f32>,
            mask: &mut RVec<f32>,
            want_mask: bool,
        ) -> RResult<(), RString>;
        /// Straight-through backward: `grad` holds `dL/dy` for `y =
        /// compress(input)` and is overwritten with `dL/dx`. `mask` is the
        /// forward pass's mask when `has_mask`.
        #[allow(clippy::too_many_arguments)]
        #[sabi(last_prefix_field)]
        fn backward(
            &self,
            rows: u64,
            cols: u64,
            seed: u64,
            input: RSlice<'_, f32>,
            mask: RSlice<'_, f32>,
            has_mask: bool,
            grad: RSliceMut<'_, f32>,
        ) -> RResult<(), RString>;
    }
}
#[doc(hidden)]
pub use ffi::{FfiFormat, FfiFormat_TO};

#[doc(hidden)]
pub type FfiFormatBox = FfiFormat_TO<'static, RBox<()>>;

// ---------------------------------------------------------------- plugin side

thread_local! {
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Makes panics inside this library silent (the library has its own copy of
/// std, so this does not touch the host) and remembers where they happened.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let at = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
            PANIC_AT.with(|p| *p.borrow_mut() = at);
        }));
    });
}

/// Runs `f`, turning a panic into an error message.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> RResult<T, RString> {
    install_panic_hook();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e.into()),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            let at = PANIC_AT.with(|p| p.borrow_mut().take());
            let at = at.map(|a| format!(" at {a}")).unwrap_or_default();
            RResult::RErr(format!("panicked while {what}: {msg}{at}").into())
        }
    }
}

struct Exported(Box<dyn Format>);

impl FfiFormat for Exported {
    fn info(&self, rows: u64, cols: u64) -> RResult<RString, RString> {
        guarded("describing the format", || {
            let info = FormatInfo::of(&*self.0, Shape::new(rows as usize, cols as usize));
            toml::to_string(&info).map(RString::from).map_err(|e| e.to_string())
        })
    }

    fn compress(
        &self,
        rows: u64,
        cols: u64,
        seed: u64,
        input: RSlice<'_, f32>,
        output: &mut RVec<f32>,
        mask: &mut RVec<f32>,
        want_mask: bool,
    ) -> RResult<(), RString> {
        guarded("compressing", || {
            let shape = Shape::new(rows as usize, cols as usize);
            let n = shape.len();
            if input.len() != n {
                return Err(format!("got {} values for a {shape} tensor", input.len()));
            }
            if output.len() != n {
                output.clear();
                output.resize(n, 0.0);
            }
            let mask = if want_mask {
                if mask.len() != n {
                    mask.clear();
                    mask.resize(n, 1.0);
                } else {
                    mask.fill(1.0);
                }
                Some(mask.as_mut_slice())
            } else {
                None
            };
            let t = Tensor { input: input.as_slice(), output: output.as_mut_slice(), mask, shape, seed };
            self.0.compress(t).map_err(|e| e.to_string())
        })
    }

    fn backward(
        &self,
        rows: u64,
        cols: u64,
        seed: u64,
        input: RSlice<'_, f32>,
        mask: RSlice<'_, f32>,
        has_mask: bool,
        mut grad: RSliceMut<'_, f32>,
    ) -> RResult<(), RString> {
        guarded("computing the backward", || {
            let shape = Shape::new(rows as usize, cols as usize);
            let n = shape.len();
            if input.len() != n || grad.len() != n || (has_mask && mask.len() != n) {
                return Err(format!(
                    "backward of a {shape} tensor got {} input values, {} gradient values and {} mask values",
                    input.len(),
                    grad.len(),
                    if has_mask { mask.len() } else { n }
                ));
            }
            let mask = has_mask.then(|| mask.as_slice());
            let g = Grad { input: input.as_slice(), grad: grad.as_mut_slice(), mask, shape, seed };
            self.0.backward(g).map_err(|e| e.to_string())
        })
    }
}

/// Body of the exported `describe`; used by [`export_plugin!`](macro@crate::export_plugin).
#[doc(hidden)]
pub fn describe(registry: fn() -> &'static Registry) -> RResult<RString, RString> {
    guarded("describing the plugin", || {
        toml::to_string(&registry().info()).map(RString::from).map_err(|e| e.to_string())
    })
}

/// Body of the exported `instantiate`; used by [`export_plugin!`](macro@crate::export_plugin).
#[doc(hidden)]
pub fn instantiate(
    registry: fn() -> &'static Registry,
    kind: RStr<'_>,
    params: RStr<'_>,
) -> RResult<FfiFormatBox, RString> {
    guarded("building the format", || {
        let table: Table = toml::from_str(params.as_str()).map_err(|e| e.message().to_string())?;
        let f = registry().build(kind.as_str(), &table).map_err(|e| e.to_string())?;
        Ok(FfiFormat_TO::from_value(Exported(f), TD_Opaque))
    })
}

/// Builds the root module; used by [`export_plugin!`](macro@crate::export_plugin).
#[doc(hidden)]
pub fn root_module(
    describe: extern "C" fn() -> RResult<RString, RString>,
    instantiate: extern "C" fn(RStr<'_>, RStr<'_>) -> RResult<FfiFormatBox, RString>,
) -> PluginModRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    PluginMod { describe, instantiate }.leak_into_prefix()
}

/// Name of the symbol abi_stable looks up (checked against abi_stable in a test).
#[doc(hidden)]
pub const ROOT_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{__call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult};
    pub use abi_stable::std_types::{RResult, RStr, RString};
}

/// Exports the kinds of a plugin library through the stable ABI.
///
/// Put it once at the root of a `cdylib` crate:
/// `sdk::export_plugin!(name: "my-formats", kinds: [MyKind, OtherKind]);`
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, kinds: [$($kind:ty),+ $(,)?] $(,)?) => {
        // An anonymous const block: its items see the caller's scope (a
        // crate root or a function body) without being nameable from it.
        const _: () = {
            use $crate::abi::__private as p;

            fn registry() -> &'static $crate::plugin::Registry {
                static R: ::std::sync::OnceLock<$crate::plugin::Registry> = ::std::sync::OnceLock::new();
                R.get_or_init(|| $crate::plugin::Registry {
                    name: $name,
                    version: env!("CARGO_PKG_VERSION"),
                    kinds: vec![$($crate::plugin::KindEntry::of::<$kind>()),+],
                })
            }
            extern "C" fn describe() -> p::RResult<p::RString, p::RString> {
                $crate::abi::describe(registry)
            }
            extern "C" fn instantiate(
                kind: p::RStr<'_>,
                params: p::RStr<'_>,
            ) -> p::RResult<$crate::abi::FfiFormatBox, p::RString> {
                $crate::abi::instantiate(registry, kind, params)
            }
            fn root() -> $crate::abi::PluginModRef {
                $crate::abi::root_module(describe, instantiate)
            }
            extern "C" fn erased_root() -> p::RootModuleResult {
                p::__call_root_module_loader(root)
            }
            /// The library header abi_stable looks up by name.
            #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
            pub static LIB_HEADER: p::LibHeader = unsafe {
                p::LibHeader::from_constructor::<$crate::abi::PluginModRef>(
                    erased_root,
                    p::CheckTypeLayout::Yes,
                )
            };
        };
    };
}

// ------------------------------------------------------------------ host side

/// Why a library could not be loaded. `Display` is the one line to show;
/// [`LoadError::detail`] has the long report for `-v`.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be opened as a shared library.
    Open(String),
    /// A shared library, but not one of our format plugins.
    NotAPlugin,
    /// An abi_stable library of another kind (its root module's base name), e.g. the CUDA
    /// trainer backend that sits next to the host binary: not a format plugin.
    OtherLibrary(String),
    /// Built against an SDK whose interface differs from the host's.
    Incompatible {
        /// SDK version the plugin reports.
        plugin_sdk: String,
        /// SDK version of the host.
        host_sdk: String,
        /// abi_stable's full report.
        detail: String,
    },
    /// The plugin panicked or failed while describing itself.
    Failed(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Open(e) => write!(f, "cannot open: {e}"),
            LoadError::NotAPlugin => {
                f.write_str("not a format plugin (no SDK export found; plugins call sdk::export_plugin!)")
            }
            LoadError::OtherLibrary(base) => {
                write!(f, "a `{base}` library, not a format plugin (plugins call sdk::export_plugin!)")
            }
            LoadError::Incompatible { plugin_sdk, host_sdk, .. } if plugin_sdk == host_sdk => write!(
                f,
                "built against a different interface of SDK {plugin_sdk} (changed without a version bump): rebuild the plugin against this SDK (run with -v for the layout report)"
            ),
            LoadError::Incompatible { plugin_sdk, host_sdk, .. } => write!(
                f,
                "built against SDK {plugin_sdk} but host has SDK {host_sdk} with a different interface: rebuild the plugin against this SDK (run with -v for the layout report)"
            ),
            LoadError::Failed(e) => f.write_str(e),
        }
    }
}

impl LoadError {
    /// The long report behind the one line, where there is one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            LoadError::Incompatible { detail, .. } => Some(detail),
            _ => None,
        }
    }
}

impl std::error::Error for LoadError {}

/// A loaded plugin library. Libraries are never unloaded.
pub struct Library {
    module: PluginModRef,
    /// What the library says about itself.
    pub info: PluginInfo,
}

/// The SDK version of this build, as abi_stable compares it.
fn host_sdk_version() -> String {
    crate::SDK_VERSION.to_string()
}

fn version_of(header: &LibHeader) -> String {
    header.version_strings().version.as_str().to_string()
}

impl Library {
    /// Loads the plugin library at `path`.
    pub fn load(path: &Path) -> Result<Library, LoadError> {
        let header = lib_header_from_path(path).map_err(|e| match e {
            LibraryError::OpenError { err, .. } => LoadError::Open(err.to_string()),
            LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin,
            other => LoadError::Failed(first_line(&other.to_string())),
        })?;
        let base = header.root_mod_consts().base_name().as_str();
        if base != <PluginModRef as RootModule>::BASE_NAME {
            return Err(LoadError::OtherLibrary(base.to_string()));
        }
        let module = header.init_root_module::<PluginModRef>().map_err(|e| match e {
            LibraryError::IncompatibleVersionNumber { .. }
            | LibraryError::AbiInstability(_)
            | LibraryError::InvalidAbiHeader(_)
            | LibraryError::InvalidCAbi { .. } => LoadError::Incompatible {
                plugin_sdk: version_of(header),
                host_sdk: host_sdk_version(),
                detail: e.to_string(),
            },
            LibraryError::RootModule { err, .. } => {
                LoadError::Failed(format!("panicked or failed while loading: {}", first_line(&err.to_string())))
            }
            other => LoadError::Failed(first_line(&other.to_string())),
        })?;
        let text = match catch_unwind(AssertUnwindSafe(|| (module.describe())())) {
            Ok(RResult::ROk(t)) => t,
            Ok(RResult::RErr(e)) => return Err(LoadError::Failed(e.into())),
            Err(_) => return Err(LoadError::Failed("panicked while describing itself".into())),
        };
        let info: PluginInfo = toml::from_str(text.as_str())
            .map_err(|e| LoadError::Failed(format!("gave an unreadable description: {}", e.message())))?;
        Ok(Library { module, info })
    }

    /// Builds format `kind` with `params`.
    pub fn instantiate(&self, kind: &str, params: &Table) -> Result<RemoteFormat, String> {
        let text = toml::to_string(params).map_err(|e| e.to_string())?;
        match (self.module.instantiate())(RStr::from(kind), RStr::from(text.as_str())) {
            RResult::ROk(inner) => Ok(RemoteFormat { inner }),
            RResult::RErr(e) => Err(e.into()),
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

/// Reusable output buffers for [`RemoteFormat::compress`]; keep one per thread.
#[derive(Default)]
pub struct Buffers {
    output: RVec<f32>,
    mask: RVec<f32>,
}

impl Buffers {
    /// The values written by the last call.
    pub fn output(&self) -> &[f32] {
        self.output.as_slice()
    }
    /// The gradient mask written by the last call that asked for one.
    pub fn mask(&self) -> &[f32] {
        self.mask.as_slice()
    }
}

/// A format living in a plugin library.
pub struct RemoteFormat {
    inner: FfiFormatBox,
}

impl RemoteFormat {
    /// What the format says about itself for `shape`.
    pub fn info(&self, shape: Shape) -> Result<FormatInfo, String> {
        match self.inner.info(shape.rows as u64, shape.cols as u64) {
            RResult::ROk(t) => {
                toml::from_str(t.as_str()).map_err(|e| format!("unreadable format description: {}", e.message()))
            }
            RResult::RErr(e) => Err(e.into()),
        }
    }

    /// Compresses `input` of `shape` into `bufs`. Checks that the plugin wrote
    /// exactly `shape.len()` values (and mask values when asked).
    pub fn compress(
        &self,
        input: &[f32],
        shape: Shape,
        seed: u64,
        bufs: &mut Buffers,
        want_mask: bool,
    ) -> Result<(), String> {
        let r = self.inner.compress(
            shape.rows as u64,
            shape.cols as u64,
            seed,
            RSlice::from_slice(input),
            &mut bufs.output,
            &mut bufs.mask,
            want_mask,
        );
        if let RResult::RErr(e) = r {
            return Err(e.into());
        }
        let n = shape.len();
        if bufs.output.len() != n {
            return Err(format!("returned {} values for a {shape} tensor ({n} expected)", bufs.output.len()));
        }
        if want_mask && bufs.mask.len() != n {
            return Err(format!("returned a mask of {} values for a {shape} tensor ({n} expected)", bufs.mask.len()));
        }
        Ok(())
    }

    /// The format's straight-through backward ([`Format::backward`]): `grad`
    /// holds `dL/dy` for `y = compress(input)` with `seed` and is
    /// overwritten with `dL/dx`. `mask`: the mask [`compress`](Self::compress)
    /// wrote for this input and seed, when the caller kept it.
    pub fn backward(
        &self,
        input: &[f32],
        shape: Shape,
        seed: u64,
        mask: Option<&[f32]>,
        grad: &mut [f32],
    ) -> Result<(), String> {
        let n = shape.len();
        if input.len() != n || grad.len() != n || mask.is_some_and(|m| m.len() != n) {
            return Err(format!(
                "backward of a {shape} tensor needs {n} values, got input {}, gradient {} and mask {}",
                input.len(),
                grad.len(),
                mask.map_or(n, <[f32]>::len)
            ));
        }
        let r = self.inner.backward(
            shape.rows as u64,
            shape.cols as u64,
            seed,
            RSlice::from_slice(input),
            RSlice::from_slice(mask.unwrap_or(&[])),
            mask.is_some(),
            RSliceMut::from_mut_slice(grad),
        );
        match r {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(e) => Err(e.into()),
        }
    }
}

/// For test fixtures that play a misbehaving plugin written without the
/// SDK's safe wrapper: wraps a raw compress function as an exported format.
#[doc(hidden)]
pub mod raw {
    use super::*;

    /// A raw compress function: input, output buffer, resizes as it likes.
    pub type RawCompress = fn(&[f32], &mut Vec<f32>);

    struct Raw(RawCompress, FormatInfo);

    impl FfiFormat for Raw {
        fn info(&self, _rows: u64, _cols: u64) -> RResult<RString, RString> {
            RResult::ROk(toml::to_string(&self.1).unwrap_or_default().into())
        }
        fn compress(
            &self,
            _rows: u64,
            _cols: u64,
            _seed: u64,
            input: RSlice<'_, f32>,
            output: &mut RVec<f32>,
            _mask: &mut RVec<f32>,
            _want_mask: bool,
        ) -> RResult<(), RString> {
            let mut v = Vec::new();
            (self.0)(input.as_slice(), &mut v);
            *output = RVec::from(v);
            RResult::ROk(())
        }
        fn backward(
            &self,
            _rows: u64,
            _cols: u64,
            _seed: u64,
            _input: RSlice<'_, f32>,
            _mask: RSlice<'_, f32>,
            _has_mask: bool,
            _grad: RSliceMut<'_, f32>,
        ) -> RResult<(), RString> {
            // Writes no mask, so the gradient passes unchanged.
            RResult::ROk(())
        }
    }

    /// Wraps `f` as a boundary object, bypassing every check of the SDK.
    pub fn format(f: RawCompress, info: FormatInfo) -> FfiFormatBox {
        FfiFormat_TO::from_value(Raw(f, info), TD_Opaque)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_symbol_matches_abi_stable() {
        assert_eq!(super::ROOT_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
