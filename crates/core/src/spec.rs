//! Format SPECs: `PRESET`, `KIND`, `KIND:key=value,...` or `PRESET:key=value,...`.
//!
//! Values are read as TOML (`4`, `0.5`, `true`, `"x"`, `[1, 2]`); a bare word
//! that is not TOML is taken as a string, so `rule=absmax` works unquoted.
//! Two SPECs joined by `+` compose (`sparse-2of4+int4`, `outliers:p=0.01+int4`;
//! see [`crate::format`]).

use sdk::params::{Table, Value};
use sdk::plugin::parse_inline_table;

use crate::loader::{Loaded, find_kind, find_preset};

/// A SPEC resolved against the loaded plugins, ready to instantiate.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What the user typed (the display name of the format).
    pub spec: String,
    /// Index of the plugin in the loaded list.
    pub plugin: usize,
    /// Kind name.
    pub kind: String,
    /// Full parameter table (preset parameters, then overrides).
    pub params: Table,
}

/// Splits `key=value,key=value` at top-level commas.
fn split_pairs(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut quoted) = (0i32, 0usize, false);
    let mut out = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' | '{' if !quoted => depth += 1,
            ']' | '}' if !quoted => depth -= 1,
            ',' if depth == 0 && !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// Splits a SPEC into the parts of a composition: at top-level `+` signs
/// followed by a letter (so `1e+3` in a value is not split).
pub fn split_parts(spec: &str) -> Vec<&str> {
    let (mut depth, mut start, mut quoted) = (0i32, 0usize, false);
    let mut out = Vec::new();
    let bytes = spec.as_bytes();
    for (i, c) in spec.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' | '{' if !quoted => depth += 1,
            ']' | '}' if !quoted => depth -= 1,
            '+' if depth == 0 && !quoted && next_word(&bytes[i + 1..]) => {
                out.push(spec[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(spec[start..].trim());
    out
}

/// True when `rest` starts (after spaces) with a letter: the start of a SPEC.
fn next_word(rest: &[u8]) -> bool {
    rest.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| b.is_ascii_alphabetic())
}

/// Parses `key=value,...` into a table.
pub fn parse_overrides(s: &str) -> Result<Table, String> {
    let mut t = Table::new();
    for pair in split_pairs(s) {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("`{}` is not key=value", pair.trim()))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!("missing parameter name in `{}`", pair.trim()));
        }
        let value = match parse_inline_table(&format!("v = {v}")) {
            Ok(mut one) => one.remove("v").unwrap_or_else(|| Value::String(v.to_string())),
            Err(_) => Value::String(v.to_string()),
        };
        if t.insert(k.to_string(), value).is_some() {
            return Err(format!("parameter `{k}` is given twice; give each parameter once"));
        }
    }
    Ok(t)
}

impl Resolved {
    /// Every parameter of the kind: its documented defaults, then the preset's parameters and
    /// the overrides on top. Two SPECs that build the same format give the same table, and a
    /// changed default changes it (sweep job identity rests on this).
    pub fn full_params(&self, libs: &[Loaded]) -> Result<Table, String> {
        let info = &libs[self.plugin].lib.info;
        let kind = info
            .kinds
            .iter()
            .find(|k| k.name == self.kind)
            .ok_or_else(|| format!("format `{}`: plugin `{}` has no kind `{}`", self.spec, info.name, self.kind))?;
        let mut full = Table::new();
        for p in &kind.params {
            let mut one = parse_inline_table(&format!("v = {}", p.default)).map_err(|e| {
                format!("plugin `{}`, kind `{}`: default of `{}` is not TOML: {e}", info.name, kind.name, p.name)
            })?;
            if let Some(v) = one.remove("v") {
                full.insert(p.name.clone(), v);
            }
        }
        full.extend(self.params.clone());
        Ok(full)
    }
}

/// Resolves `spec` against the loaded plugins.
pub fn resolve(libs: &[Loaded], spec: &str) -> Result<Resolved, String> {
    let spec = spec.trim();
    let (head, rest) = match spec.split_once(':') {
        Some((h, r)) => (h.trim(), Some(r)),
        None => (spec, None),
    };
    let overrides = match rest {
        Some(r) => parse_overrides(r).map_err(|e| format!("format `{spec}`: {e}"))?,
        None => Table::new(),
    };
    let index = |p: &Loaded| libs.iter().position(|l| std::ptr::eq(l, p)).unwrap_or(0);
    if let Some(p) = find_preset(libs, head) {
        let mut params = parse_inline_table(&p.preset.params)
            .map_err(|e| format!("preset `{head}` of plugin `{}`: {e}", p.kind.plugin.lib.info.name))?;
        params.extend(overrides);
        return Ok(Resolved {
            spec: spec.to_string(),
            plugin: index(p.kind.plugin),
            kind: p.kind.kind.name.clone(),
            params,
        });
    }
    if let Some(k) = find_kind(libs, head) {
        return Ok(Resolved {
            spec: spec.to_string(),
            plugin: index(k.plugin),
            kind: k.kind.name.clone(),
            params: overrides,
        });
    }
    Err(format!("format `{spec}`: no preset or kind named `{head}` in the loaded plugins (see `host list`)"))
}

/// Parses a tensor shape `ROWSxCOLS` (e.g. `256x4096`; `--shape`).
pub fn parse_shape(s: &str) -> Result<sdk::Shape, String> {
    let (r, c) = s.split_once(['x', 'X']).ok_or_else(|| format!("shape `{s}` is not ROWSxCOLS (e.g. 256x4096)"))?;
    let r: usize = r.trim().parse().map_err(|_| format!("shape `{s}`: bad row count `{r}`"))?;
    let c: usize = c.trim().parse().map_err(|_| format!("shape `{s}`: bad column count `{c}`"))?;
    if r == 0 || c == 0 {
        return Err(format!("shape `{s}`: rows and columns must be positive"));
    }
    Ok(sdk::Shape::new(r, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        let t = parse_overrides(input).unwrap();
        assert_eq!(toml::to_string(&t).unwrap().trim(), expected.trim(), "input: {input}");
    }

    #[test]
    fn overrides() {
        check("bits=4", "bits = 4");
        check("rule=absmax,group=32", "group = 32\nrule = \"absmax\"");
        check("scale=0.5, hadamard=true", "hadamard = true\nscale = 0.5");
        check("levels=[1, 2.5],name=\"a,b\"", "levels = [1, 2.5]\nname = \"a,b\"");
    }

    #[test]
    fn composition_parts() {
        assert_eq!(split_parts("sparse-2of4+int4"), ["sparse-2of4", "int4"]);
        assert_eq!(
            split_parts("outliers:p=0.01 + int:bits=3,rule=absmax"),
            ["outliers:p=0.01", "int:bits=3,rule=absmax"]
        );
        assert_eq!(split_parts("noise:mse=1e+3"), ["noise:mse=1e+3"]);
        assert_eq!(split_parts("int4"), ["int4"]);
    }

    #[test]
    fn bad_pairs() {
        assert!(parse_overrides("bits").unwrap_err().contains("not key=value"));
        assert!(parse_overrides("=3").unwrap_err().contains("missing parameter name"));
        let twice = parse_overrides("bits=6,bits=5").unwrap_err();
        assert!(twice.contains("`bits` is given twice"), "{twice}");
    }
}
