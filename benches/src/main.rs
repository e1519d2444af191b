//! `cf-bench`: cf's `ProcessPoolExecutor` side by side with Python's `ProcessPoolExecutor`,
//! procspawn, rayon (threads, no isolation) and raw pipes between this binary and a re-executed
//! copy of itself (the physical limit).
//!
//! ```text
//! cargo run --release -p cf-bench                      # full run, under 5 minutes on 2 cores
//! cargo run --release -p cf-bench -- --quick           # short run, under a minute
//! cargo run --release -p cf-bench -- --markdown t.md --svg chart.svg
//! cargo run --release -p cf-bench -- --count          # cf's allocations per task, counted
//! cargo run --release -p cf-bench -- --bytes --only cf,raw  # the 1 MiB and 64 MiB rows only
//! ```
//!
//! See `benches/README.md` for what each row means and how it is measured.

mod cf_pool;
mod count;
mod measure;
mod procspawn_pool;
mod python;
mod raw;
mod rayon_pool;
mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use measure::Results;

#[global_allocator]
static ALLOC: count::Counting = count::Counting;

/// The settings of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Config {
    pub(crate) quick: bool,
    /// Only the byte-transfer rows (1 MiB and 64 MiB arguments and results): `--bytes`.
    pub(crate) bytes_only: bool,
    /// Repetitions of each timed measurement; the table shows their median.
    pub(crate) reps: usize,
    /// Tiny tasks per repetition for cf and rayon.
    pub(crate) tiny: u64,
    /// Tiny tasks per repetition through Python's `submit` (it is slow).
    pub(crate) tiny_python: u64,
    /// Tiny tasks per repetition through Python's `map` (chunked, so faster).
    pub(crate) map_python: u64,
    /// Tiny tasks per repetition for procspawn (one process round trip and two channels each).
    pub(crate) tiny_procspawn: u64,
    /// Tiny frames per repetition through raw pipes.
    pub(crate) tiny_raw: u64,
    /// `map`'s chunk size.
    pub(crate) chunk: usize,
    /// Round trips per latency repetition.
    pub(crate) latency_samples: usize,
    /// Bytes of the big argument and the big result.
    pub(crate) big: usize,
    /// Repetitions of the big transfers, start-up and crash measurements.
    pub(crate) few_reps: usize,
    /// 1 ms CPU tasks per repetition.
    pub(crate) cpu_1ms: u64,
    /// 100 µs CPU tasks per repetition (cf and rayon, and Python's `map`).
    pub(crate) cpu_100us: u64,
    /// 100 µs CPU tasks per repetition through Python's `submit` (it is slow).
    pub(crate) cpu_100us_python: u64,
    /// `map`'s chunk size for the 100 µs tasks.
    pub(crate) cpu_chunk: usize,
    /// Repetitions of the CPU-task rows (each takes seconds).
    pub(crate) cpu_reps: usize,
    /// 1 MiB transfers per repetition of the 1 MiB rows.
    pub(crate) transfers_1mib: usize,
    /// Tiny tasks whose parent allocations are counted, and futures whose peak heap is.
    pub(crate) count_tiny: u64,
    pub(crate) count_futures: u64,
    /// How long an idle pool is watched.
    #[serde(serialize_with = "secs")]
    pub(crate) idle: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Config {
    fn full() -> Self {
        Config {
            quick: false,
            bytes_only: false,
            reps: 7,
            tiny: 100_000,
            tiny_python: 20_000,
            map_python: 100_000,
            tiny_procspawn: 10_000,
            tiny_raw: 1_000_000,
            chunk: 256,
            latency_samples: 2_000,
            big: 64 << 20,
            few_reps: 7,
            cpu_1ms: 10_000,
            cpu_100us: 100_000,
            cpu_100us_python: 20_000,
            cpu_chunk: 64,
            cpu_reps: 3,
            transfers_1mib: 64,
            count_tiny: 100_000,
            count_futures: 1_000_000,
            idle: Duration::from_secs(2),
        }
    }

    fn quick() -> Self {
        Config {
            quick: true,
            bytes_only: false,
            reps: 3,
            tiny: 20_000,
            tiny_python: 4_000,
            map_python: 20_000,
            tiny_procspawn: 2_000,
            tiny_raw: 200_000,
            chunk: 256,
            latency_samples: 500,
            big: 64 << 20,
            few_reps: 3,
            cpu_1ms: 600,
            cpu_100us: 6_000,
            cpu_100us_python: 3_000,
            cpu_chunk: 64,
            cpu_reps: 3,
            transfers_1mib: 16,
            count_tiny: 20_000,
            count_futures: 200_000,
            idle: Duration::from_secs(2),
        }
    }
}

struct Args {
    quick: bool,
    bytes: bool,
    markdown: Option<PathBuf>,
    svg: Option<PathBuf>,
    only: Option<Vec<String>>,
    samples: bool,
    count: bool,
}

const USAGE: &str = "usage: cf-bench [--quick] [--markdown FILE] [--svg FILE] [--only cf,python,procspawn,rayon,raw] [--bytes] [--samples] [--count]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        bytes: false,
        markdown: None,
        svg: None,
        only: None,
        samples: false,
        count: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--bytes" => args.bytes = true,
            "--markdown" => {
                args.markdown = Some(it.next().ok_or("--markdown needs a FILE")?.into())
            }
            "--svg" => args.svg = Some(it.next().ok_or("--svg needs a FILE")?.into()),
            "--only" => {
                let list = it.next().ok_or("--only needs a list")?;
                args.only = Some(list.split(',').map(str::to_owned).collect());
            }
            "--samples" => args.samples = true,
            "--count" => args.count = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            // `cargo bench` passes `--bench`; nothing to do with it.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() {
    // The raw-pipe peer is this binary with an environment marker: serve frames, never return.
    if std::env::var_os(raw::CHILD_ENV).is_some() {
        raw::child_main();
    }
    // procspawn's children are this binary too; `init` runs their closure and exits in them.
    procspawn::init();

    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let config = Config {
        bytes_only: args.bytes,
        ..if args.quick {
            Config::quick()
        } else {
            Config::full()
        }
    };
    if args.count {
        match count::run(config.count_tiny, config.count_futures) {
            Ok(counts) => counts.print(),
            Err(e) => {
                eprintln!("cf-bench --count: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let wanted = |name: &str| {
        args.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == name))
    };

    let machine = report::Machine::detect();
    println!("{machine}");
    println!(
        "mode: {} ({} repetitions, median shown)\n",
        if config.quick { "quick" } else { "full" },
        config.reps
    );

    let started = Instant::now();
    let mut columns: Vec<(report::System, Results)> = Vec::new();
    let systems: [(report::System, fn(&Config) -> Results); 5] = [
        (report::System::Cf, cf_pool::run),
        (report::System::Python, python::run),
        (report::System::Procspawn, procspawn_pool::run),
        (report::System::Rayon, rayon_pool::run),
        (report::System::Raw, raw::run),
    ];
    for (system, run) in systems {
        if !wanted(system.key()) {
            let mut results = Results::default();
            results.skip_all("not run (--only)");
            columns.push((system, results));
            continue;
        }
        let t = Instant::now();
        let load = measure::load_average();
        eprintln!(
            "== {} ... (load average {})",
            system.name(),
            report::show_load(load)
        );
        let mut results = run(&config);
        report::record_load(&mut results, load, machine.cores());
        eprintln!(
            "== {} done in {:.1} s",
            system.name(),
            t.elapsed().as_secs_f64()
        );
        columns.push((system, results));
    }

    if args.samples {
        for (system, results) in &columns {
            for (key, values) in &results.samples {
                let values: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
                println!("{} {key}: {}", system.name(), values.join(" "));
            }
        }
        println!();
    }
    let table = report::Table::new(&columns);
    println!("{}", table.render_text());
    println!(
        "total run time: {:.1} s; load average {} at the end",
        started.elapsed().as_secs_f64(),
        report::load_average()
    );
    if let Some(path) = &args.markdown {
        let text = format!(
            "{}\n\n{}",
            machine.markdown(&config),
            table.render_markdown()
        );
        match std::fs::write(path, text) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
    if let Some(path) = &args.svg {
        match table.render_svg(path, &machine) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
}
