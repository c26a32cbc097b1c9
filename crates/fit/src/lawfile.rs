//! `host fit --write-law FILE.toml`: the fitted law as a law file for
//! `host rank --law`, recording its data, method, intervals and bootstrap
//! samples (from which `host rank` derives rho intervals).

use toml::{Table, Value};

use super::FitArgs;
use super::model::{GLOBALS, LawKind};
use super::report::Report;
use host_core::law::Law;

/// Largest number of bootstrap samples written (the first ones, in resample order).
pub const MAX_SAMPLES: usize = 1000;

fn arr(v: impl IntoIterator<Item = f64>) -> Value {
    Value::Array(v.into_iter().map(Value::Float).collect())
}

/// The law file text.
pub fn write(r: &Report, args: &FitArgs) -> Result<String, String> {
    let m = &r.main;
    let layout = &m.setup.layout;
    if !matches!(layout.law, LawKind::Unified | LawKind::Logistic | LawKind::Logistic10) {
        return Err(format!(
            "--write-law: the {} law has no capacity curve of GMSE that `host rank` could use; \
             fit --law unified, logistic or logistic10",
            layout.law.name()
        ));
    }
    let p = &m.fit.params;
    let stem = args.runs.file_stem().map_or("runs".into(), |s| s.to_string_lossy().to_string());
    let mut t = Table::new();
    t.insert("name".into(), Value::String(format!("fit-{stem}")));
    t.insert(
        "description".into(),
        Value::String(format!(
            "{} law fitted by `host fit` to {} runs of {}",
            layout.law.name(),
            r.runs.len(),
            args.runs.display()
        )),
    );
    for (i, g) in GLOBALS.iter().enumerate() {
        t.insert(g.to_string(), Value::Float(p[i]));
    }
    let mut fams = Table::new();
    let source = format!("host fit, {} runs of {}", r.runs.len(), args.runs.display());
    for fam in &layout.families {
        let mut f = Table::new();
        f.insert("form".into(), Value::String(layout.law.form().into()));
        for name in layout.law.family_params() {
            let full = if layout.families.len() == 1 { name.to_string() } else { format!("{name}[{fam}]") };
            let i = layout.index(&full).expect("family parameter");
            // Law files name the logistic parameters A and B.
            let key = match *name {
                "a" => "A",
                "b" => "B",
                n => n,
            };
            f.insert(key.into(), Value::Float(p[i]));
        }
        f.insert("source".into(), Value::String(source.clone()));
        fams.insert(fam.clone(), Value::Table(f));
    }
    if !fams.contains_key("scalar") {
        // `host rank` needs a scalar curve as the fallback; keep the default one, labelled.
        let d = Law::default_law();
        let (s, _) = d.family("scalar");
        let mut f = Table::new();
        if let host_core::law::Capacity::Tanh { l, f: ff, c } = s.capacity {
            f.insert("form".into(), Value::String("tanh".into()));
            f.insert("L".into(), Value::Float(l));
            f.insert("F".into(), Value::Float(ff));
            f.insert("C".into(), Value::Float(c));
        }
        f.insert("source".into(), Value::String(format!("not fitted (no scalar runs): {}", s.source)));
        fams.insert("scalar".into(), Value::Table(f));
    }
    t.insert("families".into(), Value::Table(fams));

    let mut fit = Table::new();
    fit.insert("data".into(), Value::String(args.runs.display().to_string()));
    fit.insert("runs".into(), Value::Integer(r.runs.len() as i64));
    fit.insert("filters".into(), Value::Array(args.filters.iter().map(|f| Value::String(f.clone())).collect()));
    fit.insert("map".into(), Value::String(args.map.clone().unwrap_or_default()));
    fit.insert("fixed".into(), Value::String(args.fix.clone().unwrap_or_default()));
    fit.insert(
        "method".into(),
        Value::String(format!(
            "Huber (delta {}) on ln(pred) - ln(obs), L-BFGS from {} starts ({} in the best basin), \
             percentile bootstrap over runs ({} resamples, seed {}, {} failed)",
            m.setup.delta, m.fit.starts, m.fit.in_best_basin, m.bootstrap, args.seed, m.failed
        )),
    );
    fit.insert("rmse".into(), Value::Float(m.rmse));
    let mut ivs = Table::new();
    for pr in r.params.iter().filter(|x| !x.fixed) {
        if let (Some(a), Some(b)) = (pr.ci68, pr.ci95) {
            ivs.insert(pr.name.clone(), arr([a.0, a.1, b.0, b.1]));
        }
    }
    fit.insert("intervals".into(), Value::Table(ivs));
    // Samples of the free parameters, named per family (`F[scalar]`) so `host rank` can rebuild
    // each family's curve per resample.
    let mut samples = Table::new();
    for i in m.setup.free() {
        let base = layout.base(i);
        let key = if i < GLOBALS.len() {
            base.to_string()
        } else {
            let fam = layout.names[i]
                .split_once('[')
                .map_or(layout.families[0].clone(), |(_, f)| f.trim_end_matches(']').to_string());
            let k = match base {
                "a" => "A",
                "b" => "B",
                b => b,
            };
            format!("{k}[{fam}]")
        };
        samples.insert(key, arr(m.samples.iter().take(MAX_SAMPLES).map(|s| s[i])));
    }
    fit.insert("samples".into(), Value::Table(samples));
    t.insert("fit".into(), Value::Table(fit));
    let body = toml::to_string(&t).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Law file written by `host fit` (use with `host rank --law FILE`).\n\
         # [fit] records the data and method; [fit.samples] holds bootstrap samples of the\n\
         # free parameters, from which `host rank` gives rho intervals.\n\n{body}"
    ))
}
