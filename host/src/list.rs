//! `host list` (plugins, kinds, presets and parameters) and `host law` (the shipped laws): what
//! is installed, printed without measuring anything.

use std::path::PathBuf;

use clap::Args;
use sdk::Shape;

use crate::law::Law;
use crate::session::load;

/// `host list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Plugin libraries, folders of them, plugin crates, or folders of crates (e.g. `plugins/`).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print JSON (one object per plugin) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `host law`.
#[derive(Args, Debug)]
pub struct LawArgs {
    /// A shipped law's name (default: the built-in default law).
    pub name: Option<String>,
    /// List the shipped laws with their descriptions.
    #[arg(long, conflicts_with = "name")]
    pub list: bool,
}

/// Runs `host law`.
pub fn run_law(a: &LawArgs) -> Result<(), String> {
    if a.list {
        let width = crate::law::SHIPPED.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, _) in crate::law::SHIPPED {
            let law = Law::shipped(name).ok_or("shipped law missing")?;
            println!("{name:<width$}  {}", law.description);
        }
        return Ok(());
    }
    let name = a.name.as_deref().unwrap_or(crate::law::SHIPPED[0].0);
    match crate::law::SHIPPED.iter().find(|(n, _)| *n == name) {
        Some((_, text)) => {
            print!("{text}");
            Ok(())
        }
        None => {
            let names: Vec<&str> = crate::law::SHIPPED.iter().map(|s| s.0).collect();
            Err(format!("no shipped law named `{name}` (shipped: {})", names.join(", ")))
        }
    }
}

/// Runs `host list`.
pub fn run(a: ListArgs, verbose: bool) -> Result<(), String> {
    let (libs, d) = load(&a.paths);
    d.report(verbose);
    if libs.is_empty() {
        return Err("no plugin could be loaded from the given paths".into());
    }
    if a.json {
        let v: Vec<serde_json::Value> = libs
            .iter()
            .map(|l| {
                let mut v = serde_json::to_value(&l.lib.info).unwrap_or_default();
                v["path"] = l.path.display().to_string().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
        return Ok(());
    }
    let shape = Shape::new(256, 4096);
    for l in &libs {
        let i = &l.lib.info;
        println!("plugin {} {} (SDK {}) from {}", i.name, i.version, i.sdk_version, l.path.display());
        for k in &i.kinds {
            println!("  kind {}: {}", k.name, k.doc);
            for p in &k.params {
                println!("    {} = {}  ({}) {}", p.name, p.default, p.ty, p.doc);
            }
            for p in &k.presets {
                let bits = l
                    .lib
                    .instantiate(&k.name, &sdk::plugin::parse_inline_table(&p.params).unwrap_or_default())
                    .and_then(|f| f.info(shape));
                let bits = match bits {
                    Ok(info) => {
                        let parts: Vec<String> =
                            info.bits.parts.iter().map(|b| format!("{} {:.4}", b.what, b.bits)).collect();
                        format!(
                            "{:.4} bits/element at {shape} ({}); {}",
                            info.bits.total(),
                            parts.join(" + "),
                            info.family
                        )
                    }
                    Err(e) => format!("cannot build: {e}"),
                };
                println!("    preset {:<18} {:<40} {}", p.name, p.params, p.doc);
                println!("      {bits}");
            }
        }
    }
    Ok(())
}
