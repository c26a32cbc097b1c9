//! Format kinds, presets, and the description a plugin library gives of itself.

use serde::{Deserialize, Serialize};

use crate::params::{ParamInfo, Params, Table};
use crate::{Bits, Error, Family, Format, Result, Shape};

/// A named parameter set of a kind, e.g. `int4-absmax-g32`.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// Name users type (`--format NAME`); unique across shipped plugins.
    pub name: &'static str,
    /// Parameters as the body of a TOML inline table, e.g. `bits = 4, group = 32`.
    pub params: &'static str,
    /// One line on what it is.
    pub doc: &'static str,
}

impl Preset {
    /// A preset named `name` with the given TOML parameters and description.
    pub const fn new(name: &'static str, params: &'static str, doc: &'static str) -> Self {
        Preset { name, params, doc }
    }
}

/// A kind of format: a family of formats that differ only by parameters.
///
/// ```
/// # use sdk::*;
/// struct Identity;
/// impl Format for Identity {
///     fn compress(&self, t: Tensor<'_>) -> Result<()> {
///         t.output.copy_from_slice(t.input);
///         Ok(())
///     }
///     fn bits(&self, _shape: Shape) -> Bits { Bits::elements(32.0) }
/// }
/// struct IdentityKind;
/// impl Kind for IdentityKind {
///     type Params = ();
///     const NAME: &'static str = "identity";
///     const DOC: &'static str = "FP32, unchanged.";
///     const PRESETS: &'static [Preset] = &[Preset::new("fp32", "", "FP32")];
///     fn build(_: ()) -> Result<Box<dyn Format>> { Ok(Box::new(Identity)) }
/// }
/// ```
pub trait Kind: 'static {
    /// The parameters, declared with [`params!`](macro@crate::params) (or `()`).
    type Params: Params;
    /// Name used in specs: `NAME:key=value,...`.
    const NAME: &'static str;
    /// One paragraph on what the kind is.
    const DOC: &'static str;
    /// Named parameter sets. Default: none.
    const PRESETS: &'static [Preset] = &[];
    /// Builds a format; errors name the bad parameter ([`Error::param`]).
    fn build(params: Self::Params) -> Result<Box<dyn Format>>;
}

/// A plugin library's description of itself, as `host list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Plugin (crate) name.
    pub name: String,
    /// Plugin (crate) version.
    pub version: String,
    /// Version of the SDK the plugin was built against.
    pub sdk_version: String,
    /// The kinds it exports.
    pub kinds: Vec<KindInfo>,
}

/// Description of one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindInfo {
    /// Kind name.
    pub name: String,
    /// What it is.
    pub doc: String,
    /// Its parameters.
    pub params: Vec<ParamInfo>,
    /// Its presets.
    pub presets: Vec<PresetInfo>,
}

/// Description of one preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresetInfo {
    /// Preset name.
    pub name: String,
    /// Parameters (TOML inline-table body).
    pub params: String,
    /// What it is.
    pub doc: String,
}

/// What a built format says about itself for one tensor shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormatInfo {
    /// Family whose capacity curve applies.
    pub family: Family,
    /// Bit budget for the shape asked about.
    pub bits: Bits,
    /// Natural block length, if any.
    pub block_len: Option<usize>,
    /// Whether the output depends on the seed.
    pub stochastic: bool,
    /// Optional display name.
    pub label: Option<String>,
}

impl FormatInfo {
    /// Collects the description of `f` for `shape`.
    pub fn of(f: &dyn Format, shape: Shape) -> Self {
        FormatInfo {
            family: f.family(),
            bits: f.bits(shape),
            block_len: f.block_len(),
            stochastic: f.stochastic(),
            label: f.label(),
        }
    }
}

/// Parses the body of a TOML inline table (`bits = 4, rule = "absmax"`).
pub fn parse_inline_table(body: &str) -> Result<Table> {
    let doc = format!("p = {{ {body} }}");
    let mut t: Table =
        toml::from_str(&doc).map_err(|e| Error::Other(format!("bad parameter list `{body}`: {}", e.message())))?;
    match t.remove("p") {
        Some(toml::Value::Table(t)) => Ok(t),
        _ => Err(Error::Other(format!("bad parameter list `{body}`"))),
    }
}

/// A kind with its type erased; what the export macro collects.
#[doc(hidden)]
pub struct KindEntry {
    pub info: fn() -> KindInfo,
    pub build: fn(&Table) -> Result<Box<dyn Format>>,
    pub name: &'static str,
}

impl KindEntry {
    /// The entry for kind `K`.
    pub fn of<K: Kind>() -> Self {
        KindEntry {
            name: K::NAME,
            info: || KindInfo {
                name: K::NAME.to_string(),
                doc: K::DOC.to_string(),
                params: K::Params::infos(),
                presets: K::PRESETS
                    .iter()
                    .map(|p| PresetInfo {
                        name: p.name.to_string(),
                        params: p.params.to_string(),
                        doc: p.doc.to_string(),
                    })
                    .collect(),
            },
            build: |table| K::build(K::Params::from_table(table)?),
        }
    }
}

/// Everything a plugin library exports; built once by the export macro.
#[doc(hidden)]
pub struct Registry {
    pub name: &'static str,
    pub version: &'static str,
    pub kinds: Vec<KindEntry>,
}

impl Registry {
    /// The library's self-description.
    pub fn info(&self) -> PluginInfo {
        PluginInfo {
            name: self.name.to_string(),
            version: self.version.to_string(),
            sdk_version: crate::SDK_VERSION.to_string(),
            kinds: self.kinds.iter().map(|k| (k.info)()).collect(),
        }
    }

    /// Builds kind `kind` from `params`.
    pub fn build(&self, kind: &str, params: &Table) -> Result<Box<dyn Format>> {
        let entry = self.kinds.iter().find(|k| k.name == kind).ok_or_else(|| {
            let known: Vec<_> = self.kinds.iter().map(|k| k.name).collect();
            Error::Other(format!("no kind `{kind}` in plugin `{}` (it has: {})", self.name, known.join(", ")))
        })?;
        (entry.build)(params)
    }
}
