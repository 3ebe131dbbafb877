//! `make bench`: mlctl-operator and Argo Rollouts side by side against the
//! control plane's own floor, on the local cluster scripts/bench-operator
//! brings up (docs/performance.md explains every figure). Progress goes to
//! stderr; the tables to stdout; the figures to `<out-dir>/operator-<N>.json`.
//!
//! Not a test: figures, not assertions (beyond timeouts with clear messages).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod converge;
mod namespace;
mod objects;
mod phases;
mod probe;
mod process;
mod report;
mod requests;
mod subject;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::subject::Subject;

/// Operator scale benchmark: floor, mlctl and Argo Rollouts measured in one run.
#[derive(Parser, Debug, Clone)]
#[command(version)]
pub struct Args {
    /// Numbers of models, measured one after the other.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    pub sizes: Vec<usize>,
    /// What to measure at each size (floor, mlctl, argo-rollouts).
    #[arg(long, value_delimiter = ',', default_value = "floor,mlctl,argo-rollouts", value_parser = Subject::parse)]
    pub subjects: Vec<Subject>,
    /// Parallel clients creating the objects.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// The size at which churn and idle are measured (default: 1000 if among
    /// --sizes, else the smallest size).
    #[arg(long)]
    pub churn_size: Option<usize>,
    /// Spec edits per second during churn.
    #[arg(long, default_value_t = 10.0)]
    pub churn_rate: f64,
    /// How long the churn lasts (0: no churn).
    #[arg(long, default_value_t = 300)]
    pub churn_secs: u64,
    /// The idle window in which nothing changes (0: no idle window).
    #[arg(long, default_value_t = 600)]
    pub idle_secs: u64,
    /// Wait after convergence before the steady RSS is read.
    #[arg(long, default_value_t = 30)]
    pub settle_secs: u64,
    /// Deadline of a convergence (default: 300 s + 0.5 s per model).
    #[arg(long)]
    pub converge_timeout_secs: Option<u64>,
    /// Where the JSON results and the controllers' logs go (default: <target>/bench).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

impl Args {
    fn churn_size(&self) -> usize {
        self.churn_size.unwrap_or_else(|| {
            if self.sizes.contains(&1000) {
                1000
            } else {
                self.sizes.iter().copied().min().unwrap_or(0)
            }
        })
    }

    fn converge_timeout(&self, n: usize) -> Duration {
        Duration::from_secs(
            self.converge_timeout_secs
                .unwrap_or(300 + (n as u64).div_ceil(2)),
        )
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| mlctl_e2e::operator::target_dir().join("bench"));
    std::fs::create_dir_all(&out_dir).expect("create the output directory");
    let client = mlctl_e2e::client().await;
    mlctl_e2e::install_crds(&client).await;
    if args.subjects.contains(&Subject::Argo) {
        phases::require_argo_crds(&client).await;
    }
    let audit = mlctl_e2e::audit::Audit::open();
    let template = probe::capture(&client, &out_dir).await;
    let machine = report::Machine::read();
    for &n in &args.sizes {
        let extras = n == args.churn_size();
        let mut runs = Vec::new();
        for &subject in &args.subjects {
            eprintln!("==> N={n}: {}", subject.name());
            let ctx = phases::Ctx {
                client: &client,
                audit: &audit,
                template: &template,
                args: &args,
                log_dir: &out_dir,
            };
            runs.push(phases::run(&ctx, subject, n, extras).await);
        }
        let result = report::SizeResult {
            models: n,
            machine: machine.clone(),
            runs,
        };
        print!("{}", report::table(&result));
        let path = out_dir.join(format!("operator-{n}.json"));
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&result).expect("serialize results"),
        )
        .expect("write the results");
        eprintln!("==> wrote {}", path.display());
    }
}
