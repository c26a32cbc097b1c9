//! Format parameters: a TOML table in, a typed struct with defaults out.
//!
//! Declare parameters with [`params!`](macro@crate::params); the macro writes the
//! struct, its `Default`, and a strict reader that rejects unknown keys and
//! names the key whose value is bad. An integer parameter may declare its valid
//! range (`#[range(1..=16)]`): the reader then refuses values outside it, and
//! the conformance kit ([`crate::testing::check_kind`]) builds and checks the
//! format at values across it.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub use toml::{Table, Value};

/// What `host list` shows about one parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamInfo {
    /// Key in the TOML table / spec.
    pub name: String,
    /// Rust type, for the reader.
    pub ty: String,
    /// Default value, as TOML.
    pub default: String,
    /// One-line description (from the field's doc comment).
    pub doc: String,
}

/// The valid values of an integer parameter, `min..=max`, as declared with
/// `#[range(MIN..=MAX)]` in [`params!`](macro@crate::params).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamRange {
    /// The parameter's key.
    pub name: &'static str,
    /// Smallest valid value.
    pub min: i128,
    /// Largest valid value.
    pub max: i128,
}

/// A typed parameter set. Implemented by [`params!`](macro@crate::params); rarely by hand.
pub trait Params: Sized + Default + Send + Sync + 'static {
    /// Reads the parameters from `table`, with defaults for missing keys.
    /// Unknown keys and bad values are errors that name the key.
    fn from_table(table: &Table) -> Result<Self>;
    /// The parameters as a TOML table (every key present).
    fn to_table(&self) -> Table;
    /// Names, types, defaults and docs of every parameter.
    fn infos() -> Vec<ParamInfo>;
    /// The declared ranges of integer parameters (none by default).
    fn ranges() -> Vec<ParamRange> {
        Vec::new()
    }
}

/// A format without parameters.
impl Params for () {
    fn from_table(table: &Table) -> Result<Self> {
        match table.keys().next() {
            Some(k) => Err(Error::UnknownParam { name: k.clone(), known: vec![] }),
            None => Ok(()),
        }
    }
    fn to_table(&self) -> Table {
        Table::new()
    }
    fn infos() -> Vec<ParamInfo> {
        Vec::new()
    }
}

/// Reads one value of a parameter; used by the code [`params!`](macro@crate::params) writes.
#[doc(hidden)]
pub fn read_value<T: serde::de::DeserializeOwned>(name: &str, value: &Value) -> Result<T> {
    value.clone().try_into::<T>().map_err(|e| {
        let msg = e.to_string();
        let msg = msg.trim().trim_end_matches('\n').replace('\n', " ");
        Error::param(name, format!("{msg} (got {value})"))
    })
}

/// Refuses `value` outside `min..=max`; used by the code [`params!`](macro@crate::params) writes.
#[doc(hidden)]
pub fn check_range(name: &str, value: i128, min: i128, max: i128) -> Result<()> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Error::param(name, format!("must be {min}..={max} (got {value})")))
    }
}

/// Writes one value as TOML; used by the code [`params!`](macro@crate::params) writes.
#[doc(hidden)]
pub fn write_value<T: Serialize>(value: &T) -> Value {
    Value::try_from(value).unwrap_or_else(|e| Value::String(format!("<{e}>")))
}

/// Declares a parameter struct: fields with types, defaults and doc comments.
///
/// An integer field may declare its valid values with `#[range(MIN..=MAX)]`
/// after its doc comment: values outside are refused with an error naming
/// the key, and [`check_kind`](crate::testing::check_kind) builds the format
/// at values across the range (see there). Constraints that depend on other
/// parameters still belong in `Kind::build`.
///
/// ```
/// sdk::params! {
///     /// Parameters of my format.
///     pub struct MyParams {
///         /// Bits per element (2..=8).
///         #[range(2..=8)]
///         bits: u32 = 4,
///         /// Values sharing one scale (0 = whole row).
///         group: usize = 0,
///     }
/// }
/// use sdk::Params;
/// let t: sdk::params::Table = toml::from_str("bits = 3").unwrap();
/// let p = MyParams::from_table(&t).unwrap();
/// assert_eq!((p.bits, p.group), (3, 0));
/// let bad: sdk::params::Table = toml::from_str("bitz = 3").unwrap();
/// assert!(MyParams::from_table(&bad).unwrap_err().to_string().contains("`bitz`"));
/// let out: sdk::params::Table = toml::from_str("bits = 9").unwrap();
/// let e = MyParams::from_table(&out).unwrap_err().to_string();
/// assert!(e.contains("`bits`") && e.contains("2..=8"), "{e}");
/// assert_eq!(MyParams::ranges()[0].name, "bits");
/// ```
#[macro_export]
macro_rules! params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $(#[range($min:literal ..= $max:literal)])?
                $field:ident : $ty:ty = $default:expr
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $name {
            $(
                $(#[doc = $doc])*
                pub $field: $ty,
            )*
        }

        impl ::core::default::Default for $name {
            fn default() -> Self {
                $name { $($field: $default,)* }
            }
        }

        impl $crate::Params for $name {
            fn from_table(table: &$crate::params::Table) -> $crate::Result<Self> {
                #[allow(unused_mut)]
                let mut p = <Self as ::core::default::Default>::default();
                for (key, value) in table {
                    match key.as_str() {
                        $(stringify!($field) => {
                            p.$field = $crate::params::read_value(key, value)?;
                            $($crate::params::check_range(key, p.$field as i128, $min, $max)?;)?
                        })*
                        _ => return Err($crate::Error::UnknownParam {
                            name: key.clone(),
                            known: vec![$(stringify!($field).to_string()),*],
                        }),
                    }
                }
                Ok(p)
            }
            fn to_table(&self) -> $crate::params::Table {
                #[allow(unused_mut)]
                let mut t = $crate::params::Table::new();
                $(t.insert(stringify!($field).to_string(), $crate::params::write_value(&self.$field));)*
                t
            }
            fn infos() -> Vec<$crate::params::ParamInfo> {
                let d = <Self as ::core::default::Default>::default();
                vec![$($crate::params::ParamInfo {
                    name: stringify!($field).to_string(),
                    ty: stringify!($ty).to_string(),
                    default: $crate::params::write_value(&d.$field).to_string(),
                    doc: [$($doc),*].iter().map(|s: &&str| s.trim()).collect::<Vec<_>>().join(" "),
                }),*]
            }
            fn ranges() -> Vec<$crate::params::ParamRange> {
                vec![$($($crate::params::ParamRange { name: stringify!($field), min: $min, max: $max },)?)*]
            }
        }
    };
}
