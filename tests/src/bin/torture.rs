//! The torture program: contention through lockattr under injected faults, then every invariant
//! checked and a summary table printed. Exits non-zero on any violation.
//!
//! ```text
//! cargo run --release -p lockattr-tests --bin torture -- --duration 300
//! ```
//!
//! `--help` lists the options.

use std::process::ExitCode;

use lockattr_tests::torture::{run, Config};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let worker = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("torture_worker")))
        .unwrap_or_else(|| "torture_worker".into());
    let cfg = match Config::from_args(&args, worker) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !cfg.worker_exe.exists() {
        eprintln!(
            "torture: worker binary {} not found; build it with `cargo build --release -p lockattr-tests --bins` or pass --worker",
            cfg.worker_exe.display()
        );
        return ExitCode::from(2);
    }
    match run(cfg) {
        Ok(report) => {
            println!("{}", report.table());
            if report.violations() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("torture: {e}");
            ExitCode::from(2)
        }
    }
}
