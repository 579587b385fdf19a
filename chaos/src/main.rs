//! `mxfleet-chaos`: plays the chaos scenarios against real `mxfleet` processes and
//! prints the table of what the history shows (see `chaos/README.md`).
//!
//! Exit status: 0 when every scenario passed (or was skipped with a reason), 1 when a
//! promise broke or a scenario could not run, 2 for a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use mxfleet_chaos::report::{self, Row};
use mxfleet_chaos::scenario::{self, RunSettings, Scale, Scenario};

#[derive(Parser)]
#[command(
    name = "mxfleet-chaos",
    about = "Prove mxfleet's promises under simulated telehouse outages"
)]
struct Args {
    /// A scenario name, a comma-separated list, `all`, or `regressions` (the seeded runs
    /// in `chaos/regressions.txt`).
    #[arg(long, default_value = "all")]
    scenario: String,
    /// `short` (CI: every scenario in about a minute) or `long`.
    #[arg(long, default_value = "short")]
    scale: String,
    /// Reproduce a run: the fault schedule and the load are drawn from this seed.
    #[arg(long)]
    seed: Option<u64>,
    /// The `mxfleet` binary to test (default: next to this one, built first when run
    /// through `cargo run`).
    #[arg(long)]
    mxfleet: Option<PathBuf>,
    /// Where runs keep their data, logs and histories.
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if args.list {
        for s in Scenario::ALL {
            println!("{:<22} {}", s.name(), s.describe());
        }
        match regressions() {
            Ok(runs) => {
                for (s, seed) in runs {
                    println!(
                        "regression: {} --seed {}",
                        s.name(),
                        seed.unwrap_or_default()
                    );
                }
            }
            Err(e) => eprintln!("mxfleet-chaos: {e:#}"),
        }
        return ExitCode::SUCCESS;
    }
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("mxfleet-chaos: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let scenarios = parse_scenarios(&args.scenario)?;
    let scale = Scale::parse(&args.scale)
        .with_context(|| format!("unknown --scale {:?}: use short or long", args.scale))?;
    let binary = match args.mxfleet {
        Some(path) => path,
        None => find_or_build_mxfleet()?,
    };
    std::fs::create_dir_all(&args.out)?;
    let root = args.out.canonicalize()?;
    let mut rows: Vec<Row> = Vec::new();
    for (scenario, regression_seed) in scenarios {
        let seed = regression_seed
            .or(args.seed)
            .unwrap_or_else(|| u64::from(rand::random::<u32>()));
        let settings = RunSettings {
            binary: binary.clone(),
            root: root.clone(),
            seed,
            scale: scale.clone(),
        };
        eprintln!(
            "== {} (seed {seed}): {}",
            scenario.name(),
            scenario.describe()
        );
        let row = scenario::run(scenario, &settings).await;
        eprintln!(
            "== {} {:?} in {:.0}s",
            scenario.name(),
            row.status,
            row.seconds
        );
        if !row.passed() {
            eprintln!(
                "   reproduce: cargo run -p mxfleet-chaos --release -- --scenario {} --seed {} --scale {}",
                scenario.name(),
                seed,
                scale.name
            );
        }
        rows.push(row);
    }
    let table = report::table(&rows);
    println!("{table}");
    let json_path = root.join("report.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&rows)?)?;
    println!("report: {}", json_path.display());
    for row in rows.iter().filter(|r| !r.passed()) {
        println!(
            "reproduce {}: cargo run -p mxfleet-chaos --release -- --scenario {} --seed {} --scale {}",
            row.scenario, row.scenario, row.seed, scale.name
        );
    }
    Ok(rows.iter().all(Row::passed))
}

/// The runs to make: `all`, `regressions` (the seeded runs in `regressions.txt`), or
/// scenario names, comma-separated. A regression brings its own seed.
fn parse_scenarios(text: &str) -> anyhow::Result<Vec<(Scenario, Option<u64>)>> {
    let mut runs = Vec::new();
    for name in text.split(',').map(str::trim) {
        match name {
            "all" => runs.extend(Scenario::ALL.iter().map(|s| (*s, None))),
            "regressions" => runs.extend(regressions()?),
            _ => {
                let scenario = Scenario::parse(name).with_context(|| {
                    let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                    format!(
                        "unknown scenario {name:?}; known: all, regressions, {}",
                        known.join(", ")
                    )
                })?;
                runs.push((scenario, None));
            }
        }
    }
    Ok(runs)
}

/// `chaos/regressions.txt`: one `scenario seed what-it-found` per line.
fn regressions() -> anyhow::Result<Vec<(Scenario, Option<u64>)>> {
    let text = include_str!("../regressions.txt");
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().unwrap_or_default();
            let scenario = Scenario::parse(name)
                .with_context(|| format!("regressions.txt: unknown scenario {name:?}"))?;
            let seed = words
                .next()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("regressions.txt: no seed on {line:?}"))?;
            Ok((scenario, Some(seed)))
        })
        .collect()
}

/// The `mxfleet` binary beside this one. Under `cargo run` it is built first with the
/// same profile, so that `cargo run -p mxfleet-chaos --release` tests a fresh build.
fn find_or_build_mxfleet() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("this binary has no directory")?;
    let release = dir.file_name().is_some_and(|n| n == "release");
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "--locked", "-p", "mxfleet", "--bin", "mxfleet"]);
        if release {
            build.arg("--release");
        }
        let status = build.status().context("running cargo build for mxfleet")?;
        if !status.success() {
            bail!("cargo build -p mxfleet failed");
        }
    }
    let binary = dir.join("mxfleet");
    if !Path::new(&binary).is_file() {
        bail!(
            "no mxfleet binary at {}; build it with `cargo build --release -p mxfleet` or pass --mxfleet PATH",
            binary.display()
        );
    }
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_regression_names_a_scenario_and_a_seed() {
        let runs = regressions().expect("regressions.txt parses");
        assert!(!runs.is_empty());
        assert!(runs.iter().all(|(_, seed)| seed.is_some()));
    }

    #[test]
    fn all_and_regressions_combine_and_unknown_names_are_refused() {
        let runs = parse_scenarios("all,regressions").expect("parses");
        assert_eq!(
            runs.len(),
            Scenario::ALL.len() + regressions().unwrap().len()
        );
        assert_eq!(
            parse_scenarios("site-dark").unwrap(),
            vec![(Scenario::SiteDark, None)]
        );
        let error = parse_scenarios("site-dusk").unwrap_err().to_string();
        assert!(
            error.contains("known: all, regressions, site-dark"),
            "{error}"
        );
    }
}
