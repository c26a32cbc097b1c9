//! The laws the fitter knows: their parameters, and predicted loss with its
//! gradient.
//!
//! Every law is `Loss = A (N rho)^-alpha + B D^-beta + E` and differs only in
//! rho. A run compresses at most two tensors (weights, activations); rho is
//! the product of their capacities (DESIGN.md 2.3), 1 for an uncompressed
//! run. Capacity forms with parameters are fitted per family (`scalar`,
//! `sparse`, ...): a family that occurs in the data gets its own copy of the
//! form's parameters. Every parameter is positive and is optimized as its
//! logarithm, so gradients here are with respect to `ln p`.

use clap::ValueEnum;

use super::data::{Comp, Run};

/// Parameters shared by every law, in order.
pub const GLOBALS: [&str; 5] = ["A", "alpha", "B", "beta", "E"];

/// The law to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum LawKind {
    /// rho = 1 (compression ignored): A, alpha, B, beta, E.
    Chinchilla,
    /// tanh form per family: rho = L tanh(F x)^C, x = log_{1/4} GMSE.
    Unified,
    /// rho = 1 / (1 + b GMSE^a) per family.
    Logistic,
    /// rho = (1 - GMSE^a) / (1 + b GMSE^a) per family.
    Logistic10,
    /// One free rho per distinct compressed configuration (no function of GMSE): the best any
    /// capacity curve can do on these runs.
    Decoupled,
    /// Kumar et al.'s precision law, rho = 1 - exp(-P / gamma) per compressed tensor (P = bits;
    /// quantization only; needs bit columns).
    Precision,
}

impl LawKind {
    /// Every law, in report order.
    pub const ALL: [LawKind; 6] = [
        LawKind::Chinchilla,
        LawKind::Unified,
        LawKind::Logistic,
        LawKind::Logistic10,
        LawKind::Precision,
        LawKind::Decoupled,
    ];

    /// Name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LawKind::Chinchilla => "chinchilla",
            LawKind::Unified => "unified",
            LawKind::Logistic => "logistic",
            LawKind::Logistic10 => "logistic10",
            LawKind::Decoupled => "decoupled",
            LawKind::Precision => "precision",
        }
    }

    /// Capacity form name as written in law files (`none` where there is no curve).
    pub fn form(self) -> &'static str {
        match self {
            LawKind::Unified => "tanh",
            LawKind::Logistic => "logistic",
            LawKind::Logistic10 => "logistic10",
            LawKind::Precision => "precision",
            LawKind::Decoupled => "decoupled",
            LawKind::Chinchilla => "none",
        }
    }

    /// Names of the per-family parameters.
    pub fn family_params(self) -> &'static [&'static str] {
        match self {
            LawKind::Unified => &["L", "F", "C"],
            LawKind::Logistic | LawKind::Logistic10 => &["a", "b"],
            LawKind::Precision => &["gamma"],
            LawKind::Chinchilla | LawKind::Decoupled => &[],
        }
    }
}

/// Where each parameter of a law sits in the parameter vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The law.
    pub law: LawKind,
    /// Every parameter's name: the globals, then per-family parameters (`F`, or `F[sparse]`
    /// when several families occur), then decoupled `rho[KEY]`.
    pub names: Vec<String>,
    /// Families in the data (per-family forms only).
    pub families: Vec<String>,
    /// Compressed configurations (decoupled only), as [`Run::key`].
    pub keys: Vec<String>,
}

impl Layout {
    /// The layout of `law` on `runs`.
    pub fn new(law: LawKind, runs: &[Run]) -> Result<Layout, String> {
        let mut names: Vec<String> = GLOBALS.iter().map(|s| s.to_string()).collect();
        let (mut families, mut keys) = (Vec::new(), Vec::new());
        let per = law.family_params();
        if !per.is_empty() {
            for c in runs.iter().flat_map(Run::comps) {
                if !families.contains(&c.family) {
                    families.push(c.family.clone());
                }
            }
            families.sort();
            for fam in &families {
                for p in per {
                    names.push(if families.len() == 1 { p.to_string() } else { format!("{p}[{fam}]") });
                }
            }
        }
        if law == LawKind::Precision
            && let Some(c) = runs.iter().flat_map(Run::comps).find(|c| c.bits.is_none_or(|b| b <= 0.0))
        {
            return Err(format!(
                "the precision law needs the bits of every compressed tensor (map a bits column: \
                 --map w_bits=COL,a_bits=COL); format `{}` has none",
                c.format
            ));
        }
        if law == LawKind::Decoupled {
            for r in runs {
                if let Some(k) = r.key()
                    && !keys.contains(&k)
                {
                    keys.push(k);
                }
            }
            keys.sort();
            names.extend(keys.iter().map(|k| format!("rho[{k}]")));
        }
        Ok(Layout { law, names, families, keys })
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the law has no parameters (never: the globals are always there).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Index of parameter `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Indices that a name given by the user refers to: an exact name, or a per-family base name
    /// (`L`) meaning that parameter in every family.
    pub fn resolve(&self, name: &str) -> Vec<usize> {
        if let Some(i) = self.index(name) {
            return vec![i];
        }
        self.names
            .iter()
            .enumerate()
            .filter(|(_, n)| n.split_once('[').is_some_and(|(b, _)| b == name))
            .map(|(i, _)| i)
            .collect()
    }

    /// The base name of parameter `i` (`F[sparse]` -> `F`).
    pub fn base(&self, i: usize) -> &str {
        self.names[i].split_once('[').map_or(self.names[i].as_str(), |(b, _)| b)
    }

    /// Index of the first parameter of family `fam`.
    fn family_offset(&self, fam: usize) -> usize {
        GLOBALS.len() + fam * self.law.family_params().len()
    }

    /// Capacity of one compressed tensor under parameters `p`.
    pub fn rho_of(&self, p: &[f64], family: &str, gmse: f64, bits: Option<f64>) -> f64 {
        let Some(fam) = self.families.iter().position(|f| f == family) else {
            return f64::NAN;
        };
        let t = Term { fam, x: eff_bits(gmse), ln_g: gmse.ln(), bits: bits.unwrap_or(f64::NAN) };
        let mut g = vec![0.0; self.len()];
        self.ln_rho_term(p, &t, &mut g).exp()
    }

    /// Precomputes what the objective needs of each run.
    pub fn precompute(&self, runs: &[Run]) -> Vec<Pre> {
        runs.iter()
            .map(|r| {
                let mut terms = [Term::default(); 2];
                let mut k = 0;
                for c in r.comps() {
                    terms[k] = self.term(c);
                    k += 1;
                }
                let key = if self.law == LawKind::Decoupled {
                    r.key().and_then(|key| self.keys.iter().position(|x| *x == key))
                } else {
                    None
                };
                Pre { ln_n: r.n.ln(), ln_d: r.d.ln(), ln_obs: r.loss.ln(), terms, k, key }
            })
            .collect()
    }

    fn term(&self, c: &Comp) -> Term {
        Term {
            fam: self.families.iter().position(|f| *f == c.family).unwrap_or(0),
            x: eff_bits(c.gmse),
            ln_g: c.gmse.ln(),
            bits: c.bits.unwrap_or(f64::NAN),
        }
    }

    /// ln rho of one tensor; adds d ln rho / d ln p into `g`'s capacity slots.
    fn ln_rho_term(&self, p: &[f64], t: &Term, g: &mut [f64]) -> f64 {
        let o = self.family_offset(t.fam);
        match self.law {
            LawKind::Unified => {
                let (l, f, c) = (p[o], p[o + 1], p[o + 2]);
                let fx = f * t.x;
                let lt = if fx.is_finite() { fx.tanh().ln() } else { 0.0 };
                g[o] += 1.0;
                // d ln tanh(F x) / d ln F = F x sech^2 / tanh = 2 F x / sinh(2 F x).
                g[o + 1] += if fx.is_finite() && fx < 300.0 { c * 2.0 * fx / (2.0 * fx).sinh() } else { 0.0 };
                g[o + 2] += c * lt;
                l.ln() + c * lt
            }
            LawKind::Logistic => {
                let (a, b) = (p[o], p[o + 1]);
                let h = (a * t.ln_g).exp(); // GMSE^a (0 at GMSE 0)
                let u = b * h;
                g[o] += if h > 0.0 { -a * t.ln_g * u / (1.0 + u) } else { 0.0 };
                g[o + 1] += -u / (1.0 + u);
                -u.ln_1p()
            }
            LawKind::Logistic10 => {
                let (a, b) = (p[o], p[o + 1]);
                let h = (a * t.ln_g).exp();
                let dh = if h > 0.0 { a * t.ln_g * h } else { 0.0 }; // d h / d ln a
                g[o] += (-1.0 / (1.0 - h) - b / (1.0 + b * h)) * dh;
                g[o + 1] += -b * h / (1.0 + b * h);
                (-h).ln_1p() - (b * h).ln_1p()
            }
            LawKind::Precision => {
                let gamma = p[o];
                let e = (-t.bits / gamma).exp();
                g[o] += -(t.bits / gamma) * e / (1.0 - e);
                (-e).ln_1p()
            }
            LawKind::Chinchilla | LawKind::Decoupled => 0.0,
        }
    }

    /// Predicted loss; with `grad`, also d pred / d ln p for every parameter (overwritten).
    pub fn predict(&self, p: &[f64], r: &Pre, grad: Option<&mut [f64]>) -> f64 {
        let mut scratch = [0.0; 0];
        let g: &mut [f64] = match grad {
            Some(g) => {
                g.fill(0.0);
                g
            }
            None => &mut scratch,
        };
        let want = !g.is_empty();
        let mut ln_rho = 0.0;
        match self.law {
            LawKind::Chinchilla => {}
            LawKind::Decoupled => {
                if let Some(k) = r.key {
                    let i = GLOBALS.len() + k;
                    ln_rho = p[i].ln();
                    if want {
                        g[i] = 1.0;
                    }
                }
            }
            _ => {
                if want {
                    for t in &r.terms[..r.k] {
                        ln_rho += self.ln_rho_term(p, t, g);
                    }
                } else {
                    let mut tmp = vec![0.0; self.len()];
                    for t in &r.terms[..r.k] {
                        ln_rho += self.ln_rho_term(p, t, &mut tmp);
                    }
                }
            }
        }
        let (a, alpha, b, beta, e) = (p[0], p[1], p[2], p[3], p[4]);
        let t1 = a * (-alpha * (r.ln_n + ln_rho)).exp();
        let t2 = b * (-beta * r.ln_d).exp();
        if want {
            let dt1 = -alpha * t1; // d t1 / d ln rho
            for v in &mut g[GLOBALS.len()..] {
                *v *= dt1;
            }
            g[0] = t1;
            g[1] = -alpha * (r.ln_n + ln_rho) * t1;
            g[2] = t2;
            g[3] = -beta * r.ln_d * t2;
            g[4] = e;
        }
        t1 + t2 + e
    }

    /// rho of run `r` (product over its compressed tensors) under `p`.
    pub fn run_rho(&self, p: &[f64], r: &Pre) -> f64 {
        match self.law {
            LawKind::Chinchilla => 1.0,
            LawKind::Decoupled => r.key.map_or(1.0, |k| p[GLOBALS.len() + k]),
            _ => {
                let mut tmp = vec![0.0; self.len()];
                r.terms[..r.k].iter().map(|t| self.ln_rho_term(p, t, &mut tmp)).sum::<f64>().exp()
            }
        }
    }
}

/// Effective bits `log_{1/4} GMSE` (infinite for a lossless tensor).
pub fn eff_bits(gmse: f64) -> f64 {
    if gmse <= 0.0 { f64::INFINITY } else { -gmse.ln() / 4f64.ln() }
}

/// One compressed tensor, precomputed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Term {
    fam: usize,
    x: f64,
    ln_g: f64,
    bits: f64,
}

/// One run, precomputed.
#[derive(Debug, Clone, Copy)]
pub struct Pre {
    pub ln_n: f64,
    pub ln_d: f64,
    pub ln_obs: f64,
    terms: [Term; 2],
    k: usize,
    key: Option<usize>,
}
