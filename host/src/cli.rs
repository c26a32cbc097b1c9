//! The command line: parses the arguments and dispatches to the verb's module; nothing else.
//!
//! Owns: the `Cli` and `Command` types (each verb's flags live beside the verb) and the exit
//! status. Never: loads plugins, builds or measures formats, prints results; no other module
//! imports this one (checked by `tools/arch/cycles.py`).

use clap::{Parser, Subcommand};

/// Rank compressed number formats by the capacity a model trained over them keeps.
///
/// Loads format plugins, measures each format's Gaussian MSE (GMSE) by Monte
/// Carlo on seeded N(0,1) tensors, converts it to a representation capacity
/// rho with a scaling law, and ranks the formats.
#[derive(Parser, Debug)]
#[command(
    name = "host",
    version,
    about,
    long_about,
    after_help = "Exit status: 0 = everything asked for was done; 2 = something failed (a library in the \
                  given paths did not load, a requested format could not be built or measured, a tensor or \
                  run was skipped, a sweep job failed) while the rest was still printed; 1 = nothing could be \
                  done."
)]
pub struct Cli {
    /// Print long reports (e.g. abi_stable's layout dump for incompatible plugins).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List plugins, their format kinds, presets and parameters.
    List(crate::list::ListArgs),
    /// Measure GMSE and rank formats by capacity, capacity per bit, or predicted loss.
    Rank(crate::ranking::RankArgs),
    /// Measure GMSE Monte Carlo throughput (samples/s) through the plugin ABI.
    Bench(crate::bench::BenchArgs),
    /// Apply a format to real tensors (.safetensors or .npy) and report its error per tensor.
    Apply(crate::apply::ApplyArgs),
    /// Print a shipped law file (default: the built-in default law; copy it to make your own),
    /// or list the shipped laws.
    Law(crate::list::LawArgs),
    /// Train a small Llama-style byte-level language model over a format (quantization-aware,
    /// straight-through) and record its loss, for calibrating the law with `host fit`.
    Train(crate::train::TrainArgs),
    /// Fit a scaling law to training runs (CSV or `host train --json` records): parameters with
    /// bootstrap intervals, identifiability checks, all laws side by side, implied rho per format,
    /// the factorization check, SVG plots, and a law file for `host rank --law`.
    Fit(crate::fit::FitArgs),
    /// Run an experiment file (formats x distributions GMSE, a training grid, a fit) as
    /// independent jobs into one shared results folder: plan, run (locally, as Slurm array or
    /// Kubernetes indexed tasks), status, collect, emit launch scripts.
    Sweep(crate::sweep::SweepArgs),
    /// Write a Markdown report with plots from a sweep's results folder.
    Report(crate::report::ReportArgs),
    /// Does GMSE / rho predict the trained loss? The numbers of a validation study from
    /// collected training runs (sweep results folders, .jsonl or .csv files).
    ///
    /// A configuration is (model, weight format, activation format) on one data set and token
    /// budget; its seeds are repeats. A model size is (data set, model, tokens). The seed SD of
    /// a model size is pooled over its configurations (dof = runs - configurations). Sections:
    ///
    /// a. Per model size: Spearman and Kendall tau-b (ties handled) between GMSE and mean loss
    /// over the scalar weight-only configurations (noise and compositions excluded; expected
    /// positive) and between rho (w_rho x a_rho of the records, or --law) and mean loss over
    /// every configuration, uncompressed included (expected negative); 68/95 % intervals from
    /// --bootstrap resamples of the seeds within each configuration. Then every pair of scalar
    /// formats whose loss order contradicts their GMSE order, with the loss difference in
    /// standard errors (seed SD * sqrt(1/n1 + 1/n2)), largest first.
    ///
    /// b. The unified law refitted on the runs (host fit's report: parameters with 68/95 %
    /// bootstrap intervals over runs, every other law side by side, implied rho, the fitter's
    /// refusals and warnings); which parameters are fixed and why.
    ///
    /// c. Held-out prediction: each format (all its sizes and seeds) left out in turn, the
    /// unified law fitted on the rest with b's settings (no bootstrap), the format's loss
    /// predicted from its GMSE alone; error = predicted - observed mean in seed SDs, and per
    /// family (scalar, sparse, vector, other = noise / compositions, W+A) the fraction within 2
    /// seed SDs.
    ///
    /// d. Factorization: implied rho (decoupled fit) of W+A pairs and compositions A+B against
    /// the product of their parts' implied rho, with bootstrap intervals.
    ///
    /// e. Noise injection vs the quantizer: each noise configuration (formats named noise...)
    /// beside the weight-only scalar or vector quantizer of closest GMSE at the same size: both
    /// GMSE, the loss difference and it in standard errors.
    ///
    /// Exit status: 0 every section computed; 2 some not (each says why in one line); 1 none.
    #[command(verbatim_doc_comment)]
    Validate(crate::validate::ValidateArgs),
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    let result = match cli.command {
        Command::List(a) => crate::list::run(a, verbose),
        Command::Rank(a) => crate::ranking::run(a, verbose),
        Command::Bench(a) => crate::bench::run(a, verbose),
        Command::Apply(a) => crate::apply::run(a, verbose),
        Command::Fit(a) => crate::fit::run(a, verbose),
        Command::Train(a) => crate::train::run(a, verbose),
        Command::Sweep(a) => crate::sweep::run(a, verbose),
        Command::Report(a) => crate::report::run(&a, verbose),
        Command::Validate(a) => match crate::validate::run(a, verbose) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Law(a) => crate::list::run_law(&a),
    };
    if let Err(e) = &result {
        eprintln!("host: error: {e}");
    }
    crate::diag::exit_code(&result)
}
