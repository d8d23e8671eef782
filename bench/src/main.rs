//! cpe-bench: measures cpe-config's figures (P1 to P8 of docs/performance.md) against baselines taken in
//! the same run, with the app started in this process on port 0, and prints the table.

mod child;
mod harness;
mod load;
mod memory;
mod p1;
mod p2;
mod p3;
mod p4;
mod p5;
mod p6;
mod p7;
mod p7_busy;
mod p8;
mod report;
mod sys;
mod waiters;

use clap::Parser;
use cpe_config::duration::{format_duration, parse_duration};
use harness::{Bench, Settings};
use report::Report;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "cpe-bench",
    about = "Measures cpe-config against baselines taken in the same run (docs/performance.md)",
    long_about = "Measures cpe-config against baselines taken in the same run and prints a table \
        (docs/performance.md explains each figure). Every phase starts its own app in this process, on \
        127.0.0.1 port 0, with its own queues and a temporary data directory, and removes them after. \
        P1 and P4 need RabbitMQ; without it they are reported as skipped and the rest still runs."
)]
struct Options {
    /// RabbitMQ on this machine, for P1 and P4 (and start-up in P5).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    amqp_url: String,

    /// A smoke run: N=1000, d=200ms, sizes 1k and 10k, 3s per throughput phase.
    #[arg(long)]
    quick: bool,

    /// Sizes at which P1, P4 and P5 are repeated (k and M suffixes). [default: 1k,10k,100k; quick: 1k,10k]
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    sizes: Option<Vec<u64>>,

    /// Sizes at which P5 measures memory per retained task. [default: the sizes and 1M; quick: the sizes]
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    memory_sizes: Option<Vec<u64>>,

    /// Sizes of the stores P7 times a page of the task listing in; the smallest is the baseline.
    /// [default: 10k,1M; quick: 10k,100k]
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    page_sizes: Option<Vec<u64>>,

    /// Connections of the HTTP load generator, each a closed loop over one keep-alive connection.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1000))]
    connections: u16,

    /// Length of each throughput measurement (P1, P2). [default: 10s; quick: 3s]
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,

    /// N of P3, of P4's d = 0 run and of P7's waiters. [default: 10000; quick: 1000]
    #[arg(long, value_parser = parse_size)]
    n: Option<u64>,

    /// d, Service A's configuration delay in P3 and P4. [default: 2s; quick: 200ms]
    #[arg(long, value_parser = parse_duration)]
    delay: Option<Duration>,

    /// Longest time one sized run (P1, P4) or one fill of P7 may take before it is cut short. [default: 120s;
    /// quick: 60s]
    #[arg(long, value_parser = parse_duration)]
    limit: Option<Duration>,

    /// Longest time filling a file store in P5 may take (one fsync per task). [default: 60s; quick: 20s]
    #[arg(long, value_parser = parse_duration)]
    fill_limit: Option<Duration>,

    /// The cpe-config binary P6, P7 and P8 start as their server. [default: the one next to cpe-bench]
    #[arg(long)]
    binary: Option<std::path::PathBuf>,

    /// Phases to run, like P1,P3. [default: all]
    #[arg(long, value_delimiter = ',', value_parser = parse_phase)]
    only: Option<Vec<u8>>,

    /// Internal: be P5's measuring child, filling a registry with this many tasks.
    #[arg(long, hide = true, value_parser = parse_size)]
    memory_child: Option<u64>,

    /// Internal: the measuring child keeps its tasks unfinished (with their parameters).
    #[arg(long, hide = true)]
    unfinished_tasks: bool,

    /// Worker threads of the app's runtime, and of the load generator's.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
}

fn parse_size(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let (number, factor) = match raw.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1_000),
        None => match raw.strip_suffix('M') {
            Some(n) => (n, 1_000_000),
            None => (raw, 1),
        },
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{raw}` is not a size: use a positive number like 1000, 10k or 1M"))
}

fn parse_phase(raw: &str) -> Result<u8, String> {
    match raw.trim().to_ascii_uppercase().as_str() {
        "P1" => Ok(1),
        "P2" => Ok(2),
        "P3" => Ok(3),
        "P4" => Ok(4),
        "P5" => Ok(5),
        "P6" => Ok(6),
        "P7" => Ok(7),
        "P8" => Ok(8),
        _ => Err(format!("`{raw}` is not a phase: use P1, P2, P3, P4, P5, P6, P7 or P8")),
    }
}

impl Options {
    fn settings(&self) -> Settings {
        let q = self.quick;
        let pick = |given: Option<Duration>, full: u64, quick: u64| {
            given.unwrap_or(Duration::from_millis(if q { quick } else { full }))
        };
        let sizes = self.sizes.clone().unwrap_or_else(|| {
            if q {
                vec![1_000, 10_000]
            } else {
                vec![1_000, 10_000, 100_000]
            }
        });
        let memory_sizes = self.memory_sizes.clone().unwrap_or_else(|| {
            let mut all = sizes.clone();
            if !q {
                all.push(1_000_000);
            }
            all.sort_unstable();
            all.dedup();
            all
        });
        let mut page_sizes = self.page_sizes.clone().unwrap_or_else(|| {
            if q {
                vec![10_000, 100_000]
            } else {
                vec![10_000, 1_000_000]
            }
        });
        page_sizes.sort_unstable();
        page_sizes.dedup();
        Settings {
            amqp_url: self.amqp_url.clone(),
            quick: q,
            connections: usize::from(self.connections),
            duration: pick(self.duration, 10_000, 3_000),
            n: self.n.unwrap_or(if q { 1_000 } else { 10_000 }),
            delay: pick(self.delay, 2_000, 200),
            sizes,
            memory_sizes,
            page_sizes,
            limit: pick(self.limit, 120_000, 60_000),
            fill_limit: pick(self.fill_limit, 60_000, 20_000),
        }
    }

    fn runs(&self, phase: u8) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(&phase))
    }
}

fn main() -> ExitCode {
    let options = Options::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        cpe_config::telemetry::init(cpe_config::config::LogFormat::Text);
    }
    cpe_config::tls::install_crypto_provider();
    cpe_config::limits::raise_open_file_limit();
    let threads = usize::from(options.threads);
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            .enable_all()
            .build()
    };
    let (app_runtime, load_runtime) = match (runtime("app"), runtime("load")) {
        (Ok(app), Ok(load)) => (app, load),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cpe-bench: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let load = load_runtime.handle().clone();
    let result = match options.memory_child {
        Some(n) => app_runtime.block_on(memory::child(n, options.unfinished_tasks)),
        None => app_runtime.block_on(run(options, load)),
    };
    // Connections still open on the load runtime are dropped with it, without waiting on them.
    load_runtime.shutdown_timeout(Duration::from_secs(5));
    app_runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cpe-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options, load: tokio::runtime::Handle) -> anyhow::Result<()> {
    let settings = options.settings();
    let started = Instant::now();
    let broker = harness::check_broker(&settings.amqp_url).await;
    let command = reproduce();
    let load_before = report::load_average();
    let tree = report::source_tree();
    println!(
        "cpe-bench {} on {}; load average {load_before}",
        report::today(),
        report::machine()
    );
    println!("reproduce with: {command}");
    println!(
        "settings ({}): {} connections, {} per throughput phase, N={}, d={}, sizes {:?}, memory sizes {:?}, page sizes {:?}, per-run limit {}",
        if settings.quick { "quick" } else { "full" },
        settings.connections,
        format_duration(settings.duration),
        settings.n,
        format_duration(settings.delay),
        settings.sizes,
        settings.memory_sizes,
        settings.page_sizes,
        format_duration(settings.limit)
    );
    if let Err(why) = &broker {
        println!("RabbitMQ: {why}; P1 and P4 will be skipped");
    }
    let bench = Bench::new(settings, load, broker)?;
    // Connects the sentinel that tells when someone else restarts the broker mid-measurement.
    bench.broker_dropped().await;
    let mut report = Report::default();
    let mut rates = p1::Rates::default();
    if options.runs(1) {
        phase("P1 create throughput");
        rates = p1::run(&bench, &mut report).await;
    }
    if options.runs(2) {
        phase("P2 status throughput");
        p2::run(&bench, &mut report).await;
    }
    if options.runs(3) {
        phase("P3 Service A concurrency");
        p3::run(&bench, &mut report).await;
    }
    if options.runs(4) {
        phase("P4 pipeline");
        p4::run(&bench, &mut report, &rates).await;
    }
    if options.runs(5) {
        phase("P5 memory and start-up");
        p5::run(&bench, &mut report).await;
    }
    if options.runs(6) {
        phase("P6 bursts of new connections");
        p6::run(&bench, &mut report, options.binary.clone()).await;
    }
    if options.runs(7) {
        phase("P7 pages of the task listing, and waiters");
        p7::run(&bench, &mut report).await;
        p7_busy::run(&bench, &mut report).await;
        waiters::run(&bench, &mut report, options.binary.clone()).await;
    }
    if options.runs(8) {
        phase("P8 contention across instances");
        p8::run(&bench, &mut report, options.binary.clone()).await;
    }
    let _ = std::fs::remove_dir_all(&bench.root);
    println!();
    println!(
        "## cpe-bench {} ({}), {:.0} s in all",
        report::today(),
        report::machine(),
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("Command: `{command}`; source: {tree}");
    println!();
    println!(
        "Load average (1, 5, 15 min) before: {load_before}; after: {}",
        report::load_average()
    );
    println!();
    print!("{}", report.render());
    println!(
        "\nThe app and the load generator share this process and the machine's cores: \"load generator\" is the CPU of \
         the load runtime's threads; RSS figures are of the whole process, measured from a baseline taken just before."
    );
    Ok(())
}

fn phase(name: &str) {
    println!("\n== {name}");
}

/// The command line that reproduces this run.
fn reproduce() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut command = "cargo run --release -p cpe-bench".to_string();
    if !args.is_empty() {
        command.push_str(" -- ");
        command.push_str(&args.join(" "));
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_phases_parse() {
        assert_eq!(parse_size("10k"), Ok(10_000));
        assert_eq!(parse_size("1M"), Ok(1_000_000));
        assert_eq!(parse_size("250"), Ok(250));
        assert!(parse_size("0").is_err() && parse_size("ten").is_err());
        assert_eq!(parse_phase("p3"), Ok(3));
        assert_eq!(parse_phase("P7"), Ok(7));
        assert_eq!(parse_phase("P8"), Ok(8));
        assert!(parse_phase("P9").is_err());
    }
}
