//! Launch scripts for a planned sweep: a Slurm array script, a Kubernetes
//! Indexed Job and a GNU parallel command line. Each task runs
//! `host sweep run EXP --results DIR`, which picks its job(s) from the
//! scheduler's index; every path is absolute. The Kubernetes pods see those
//! paths only on shared storage mounted at the same place: `--pvc NAME` (a
//! PersistentVolumeClaim) or `--host-path` (the nodes' own folder) is
//! required.

use std::path::Path;

use clap::{Args, ValueEnum};

use super::plan::Manifest;

/// Where the sweep runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// A Slurm batch script with a job array (`sbatch` it).
    Slurm,
    /// A Kubernetes Indexed Job manifest (`kubectl apply -f` it).
    K8s,
    /// A GNU parallel command line for one machine.
    Parallel,
}

/// Options of the emitted scripts.
#[derive(Args, Debug, Clone)]
pub struct EmitOptions {
    /// CPUs per task (Slurm `--cpus-per-task`, Kubernetes CPU request; also RAYON_NUM_THREADS).
    #[arg(long, default_value_t = 4)]
    pub cpus: usize,
    /// Memory per task (Slurm `--mem`, e.g. `8G`; Kubernetes request, e.g. `8Gi` is derived).
    #[arg(long, default_value = "8G")]
    pub mem: String,
    /// Wall-time limit per task (Slurm `--time`, HH:MM:SS).
    #[arg(long, default_value = "04:00:00")]
    pub time: String,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm: at most this many array tasks at once (`--array=0-N%K`).
    #[arg(long)]
    pub max_running: Option<usize>,
    /// Kubernetes: pods at once (`parallelism`); GNU parallel: `-j`.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
    /// Kubernetes: container image holding `host` and the plugins.
    #[arg(long, default_value = "host:latest")]
    pub image: String,
    /// Kubernetes: a PersistentVolumeClaim holding the working folder, mounted in every pod at
    /// the same absolute path (the experiment, plugins and results folder must be shared by
    /// every pod). `emit k8s` needs this or --host-path.
    #[arg(long, value_name = "NAME", conflicts_with = "host_path")]
    pub pvc: Option<String>,
    /// Kubernetes: mount the node's own working folder (a hostPath volume at the same absolute
    /// path) instead of a PVC: for a single-node cluster on this machine (kind with that folder
    /// mounted, minikube, k3s) or nodes that all mount one shared file system there.
    #[arg(long)]
    pub host_path: bool,
    /// Kubernetes: retries of the whole Job (`backoffLimit`).
    #[arg(long, default_value_t = 6)]
    pub backoff_limit: usize,
    /// Tasks to launch (default: one per job). With fewer tasks than jobs, task i runs the jobs
    /// j with j % TASKS == i (Slurm: SLURM_ARRAY_TASK_COUNT; Kubernetes: SWEEP_TASK_COUNT).
    #[arg(long, value_name = "K")]
    pub tasks: Option<usize>,
    /// The `host` executable to run (default: this one).
    #[arg(long, value_name = "PATH")]
    pub host_exe: Option<std::path::PathBuf>,
}

/// Quotes `s` for a POSIX shell when needed.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A JSON string literal (valid YAML flow scalar).
fn yq(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A DNS-1123 name from the experiment name.
pub fn k8s_name(name: &str) -> String {
    let mut s: String =
        name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    s = s.trim_matches('-').to_string();
    s.truncate(50);
    let s = s.trim_end_matches('-');
    if s.is_empty() { "sweep".into() } else { format!("sweep-{s}") }
}

/// The command every task runs (without a selection: the scheduler's index picks the job).
fn run_argv(m: &Manifest, exe: &Path) -> Vec<String> {
    vec![
        exe.display().to_string(),
        "sweep".into(),
        "run".into(),
        m.experiment.display().to_string(),
        "--results".into(),
        m.results.display().to_string(),
    ]
}

/// The text for `target`; `cwd` is where relative plugin paths were resolved.
pub fn emit(target: Target, m: &Manifest, o: &EmitOptions, cwd: &Path) -> Result<String, String> {
    let jobs = m.jobs.len();
    if jobs == 0 {
        return Err("the plan has no jobs; nothing to emit".into());
    }
    let n = match o.tasks {
        Some(0) => return Err("--tasks must be at least 1".into()),
        Some(k) => k.min(jobs),
        None => jobs,
    };
    let exe = match &o.host_exe {
        Some(p) => super::plan::absolute(p),
        None => std::env::current_exe().map_err(|e| format!("cannot locate this executable: {e}; pass --host-exe"))?,
    };
    let argv = run_argv(m, &exe);
    let cmd = argv.iter().map(|a| sh_quote(a)).collect::<Vec<_>>().join(" ");
    let cwd_s = cwd.display().to_string();
    Ok(match target {
        Target::Slurm => {
            let logs = m.results.join("logs");
            let array = match o.max_running {
                Some(k) => format!("0-{}%{k}", n - 1),
                None => format!("0-{}", n - 1),
            };
            let mut s = String::new();
            s += "#!/bin/bash\n";
            s += &format!(
                "# Sweep `{}`: {n} jobs, one per array task (host sweep run picks SLURM_ARRAY_TASK_ID).\n",
                m.name
            );
            s += &format!(
                "# The log folder must exist before submitting: mkdir -p {}\n",
                sh_quote(&logs.display().to_string())
            );
            s += &format!("#SBATCH --job-name={}\n", k8s_name(&m.name));
            s += &format!("#SBATCH --array={array}\n");
            s += &format!("#SBATCH --cpus-per-task={}\n", o.cpus);
            s += &format!("#SBATCH --mem={}\n", o.mem);
            s += &format!("#SBATCH --time={}\n", o.time);
            // Training jobs with `device = "cuda"` need a GPU per task.
            if m.jobs.iter().any(|j| j.config["device"] == "cuda") {
                s += "#SBATCH --gres=gpu:1\n";
            }
            if let Some(p) = &o.partition {
                s += &format!("#SBATCH --partition={p}\n");
            }
            s += &format!("#SBATCH --output={}/%A_%a.out\n", logs.display());
            s += "set -euo pipefail\n";
            s += &format!("cd {}\n", sh_quote(&cwd_s));
            s += "export RAYON_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}\n";
            s += &format!("exec {cmd}\n");
            s
        }
        Target::Parallel => {
            let select = if n == jobs { "--index {}".to_string() } else { format!("--shard {{}}/{n}") };
            format!(
                "cd {} && seq 0 {} | parallel -j {} --joblog {} {cmd} {select}\n",
                sh_quote(&cwd_s),
                n - 1,
                o.parallelism,
                sh_quote(&m.results.join("parallel.log").display().to_string())
            )
        }
        Target::K8s => {
            if o.pvc.is_none() && !o.host_path {
                return Err(format!(
                    "emit k8s: the pods need {cwd_s} (experiment, plugins, results) on storage they share: \
                     pass --pvc NAME (a PersistentVolumeClaim holding it, mounted at that path) or --host-path \
                     (each node's own {cwd_s}: a single-node cluster, or a shared file system mounted there)"
                ));
            }
            let mem = match o.mem.strip_suffix(['G', 'M', 'K']) {
                Some(num) => format!("{num}{}i", &o.mem[o.mem.len() - 1..]),
                None => o.mem.clone(),
            };
            let mut s = String::new();
            s += &format!(
                "# Sweep `{}`: {n} jobs, one per completion index (host sweep run reads JOB_COMPLETION_INDEX).\n",
                m.name
            );
            s += "# Every pod mounts the working folder at the same absolute path (--pvc or --host-path).\n";
            s += "apiVersion: batch/v1\n";
            s += "kind: Job\n";
            s += "metadata:\n";
            s += &format!("  name: {}\n", k8s_name(&m.name));
            s += "spec:\n";
            s += "  completionMode: Indexed\n";
            s += &format!("  completions: {n}\n");
            s += &format!("  parallelism: {}\n", o.parallelism.min(n));
            s += &format!("  backoffLimit: {}\n", o.backoff_limit);
            s += "  template:\n";
            s += "    spec:\n";
            s += "      restartPolicy: Never\n";
            s += "      containers:\n";
            s += "        - name: sweep\n";
            s += &format!("          image: {}\n", yq(&o.image));
            s += &format!("          workingDir: {}\n", yq(&cwd_s));
            s += &format!("          command: [{}]\n", argv.iter().map(|a| yq(a)).collect::<Vec<_>>().join(", "));
            s += "          env:\n";
            s += "            - name: RAYON_NUM_THREADS\n";
            s += &format!("              value: \"{}\"\n", o.cpus);
            s += "            - name: SWEEP_TASK_COUNT\n";
            s += &format!("              value: \"{n}\"\n");
            s += "          resources:\n";
            s += "            requests:\n";
            s += &format!("              cpu: \"{}\"\n", o.cpus);
            s += &format!("              memory: {}\n", yq(&mem));
            s += "          volumeMounts:\n";
            s += "            - name: work\n";
            s += &format!("              mountPath: {}\n", yq(&cwd_s));
            s += "      volumes:\n";
            s += "        - name: work\n";
            match &o.pvc {
                Some(pvc) => {
                    s += "          persistentVolumeClaim:\n";
                    s += &format!("            claimName: {}\n", yq(pvc));
                }
                None => {
                    s += "          hostPath:\n";
                    s += &format!("            path: {}\n", yq(&cwd_s));
                    s += "            type: Directory\n";
                }
            }
            s
        }
    })
}
