//! `lockbench --quick` runs to the end and prints every scenario's table (no timing assertions: the
//! numbers are for people, see BENCHMARKS.md).

use std::process::Command;

#[test]
fn quick_run_prints_every_scenario() {
    assert!(
        lockattr_runtime::testing::redis_server_available(),
        "redis-server is not installed: run `bash scripts/test` (it installs it) or set \
         LOCKATTR_REDIS_SERVER to a redis-server binary"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .arg("--quick")
        .output()
        .expect("run lockbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "lockbench --quick failed:\n{stdout}\n{stderr}"
    );
    for heading in [
        "## S1 ",
        "## S2 ",
        "## S3 ",
        "## S4 ",
        "## S5 ",
        "## S6 ",
        "## S7 ",
        "## Targets",
    ] {
        assert!(
            stdout.contains(heading),
            "no `{heading}` table in:\n{stdout}"
        );
    }
    let table = |heading: &str| -> Vec<&str> {
        let start = stdout.find(heading).expect("heading");
        stdout[start..]
            .lines()
            .skip(1)
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .collect()
    };
    for (heading, names, rows_per_name) in [
        ("## S1 ", &lockattr_bench::contenders::Kind::ALL[..], 1),
        ("## S2 ", &lockattr_bench::contenders::Kind::ALL[..], 2),
        ("## S3 ", &lockattr_bench::contenders::Kind::ALL[..], 2),
    ] {
        let rows = table(heading);
        // Every row has the header's cells.
        let cells = |r: &str| r.matches('|').count();
        assert!(
            rows.iter().all(|r| cells(r) == cells(rows[0])),
            "{heading}: rows with another number of cells than the header:\n{}",
            rows.join("\n")
        );
        for k in names {
            let n = rows.iter().filter(|r| r.contains(k.name())).count();
            assert_eq!(n, rows_per_name, "{heading}: {} rows for {}", n, k.name());
        }
    }
    let s4 = table("## S4 ");
    for name in ["lockattr", "rslock", "distributed-lock-redis"] {
        assert_eq!(
            s4.iter().filter(|r| r.contains(name)).count(),
            2,
            "S4 rows for {name}"
        );
    }
    let s7 = table("## S7 ");
    for backend in [
        "one node",
        "Redlock, 3 masters",
        "Redlock, 5 masters",
        "Cluster",
    ] {
        assert_eq!(
            s7.iter()
                .filter(|r| r.starts_with(&format!("| {backend}")))
                .count(),
            1,
            "S7 row for {backend}"
        );
    }
    assert!(stdout.contains("lockbench: done"), "{stdout}");
}
