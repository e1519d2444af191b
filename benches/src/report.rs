//! The table (text and Markdown), the chart (SVG) and the machine they were measured on.

use std::fmt;
use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::Config;
use crate::measure::{self, Results};

/// A column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum System {
    Cf,
    Python,
    Procspawn,
    Rayon,
    Raw,
}

impl System {
    pub(crate) fn name(self) -> &'static str {
        match self {
            System::Cf => "cf",
            System::Python => "Python",
            System::Procspawn => "procspawn",
            System::Rayon => "rayon",
            System::Raw => "raw",
        }
    }

    /// The name `--only` takes.
    pub(crate) fn key(self) -> &'static str {
        match self {
            System::Cf => "cf",
            System::Python => "python",
            System::Procspawn => "procspawn",
            System::Rayon => "rayon",
            System::Raw => "raw",
        }
    }
}

/// Peers that cf is divided by, in the ratio columns.
const RATIO_PEERS: [System; 3] = [System::Python, System::Procspawn, System::Raw];

#[derive(Debug, Clone, Copy)]
enum Unit {
    Rate,
    Micros,
    Millis,
    MibPerSec,
    Mib,
    Percent,
    /// A plain number (CPU seconds per wall second).
    Plain,
}

struct Row {
    key: &'static str,
    /// The label under the chart's bars.
    short: &'static str,
    /// The key peers are read from (differs for cf-only variants).
    peer_key: &'static str,
    label: &'static str,
    unit: Unit,
}

const ROWS: [Row; 29] = [
    Row {
        short: "submit + as_completed",
        key: measure::SUBMIT,
        peer_key: measure::SUBMIT,
        label: "tiny tasks, submit + as_completed (tasks/s)",
        unit: Unit::Rate,
    },
    Row {
        short: "submit, TCP",
        key: measure::TCP_SUBMIT,
        peer_key: measure::SUBMIT,
        label: "  same, cf over TCP, 2 local agents (tasks/s)",
        unit: Unit::Rate,
    },
    Row {
        short: "submit, parent CPU",
        key: measure::SUBMIT_PARENT_CPU,
        peer_key: measure::SUBMIT_PARENT_CPU,
        label: "  same, parent CPU per task (µs)",
        unit: Unit::Micros,
    },
    Row {
        short: "map, chunksize 256",
        key: measure::MAP,
        peer_key: measure::MAP,
        label: "tiny tasks, map chunksize 256 (tasks/s)",
        unit: Unit::Rate,
    },
    Row {
        short: "map, buffered",
        key: measure::MAP_BUFFERED,
        peer_key: measure::MAP,
        label: "  same, cf with buffersize 16 chunks (tasks/s)",
        unit: Unit::Rate,
    },
    Row {
        short: "1 ms tasks",
        key: measure::CPU_1MS,
        peer_key: measure::CPU_1MS,
        label: "1 ms CPU tasks, submit + as_completed (% of ideal)",
        unit: Unit::Percent,
    },
    Row {
        short: "100 µs tasks",
        key: measure::CPU_100US,
        peer_key: measure::CPU_100US,
        label: "100 µs CPU tasks, submit + as_completed (% of ideal)",
        unit: Unit::Percent,
    },
    Row {
        short: "100 µs tasks, map",
        key: measure::CPU_100US_MAP,
        peer_key: measure::CPU_100US_MAP,
        label: "100 µs CPU tasks, map chunksize 64 (% of ideal)",
        unit: Unit::Percent,
    },
    Row {
        short: "1 MiB argument",
        key: measure::ARG_1MIB,
        peer_key: measure::ARG_1MIB,
        label: "1 MiB Vec<u8> argument, one at a time (MiB/s)",
        unit: Unit::MibPerSec,
    },
    Row {
        short: "1 MiB argument, ByteBuf",
        key: measure::ARG_1MIB_BYTEBUF,
        peer_key: measure::ARG_1MIB,
        label: "  same, cf with serde_bytes::ByteBuf (MiB/s)",
        unit: Unit::MibPerSec,
    },
    Row {
        short: "1 MiB result",
        key: measure::RES_1MIB,
        peer_key: measure::RES_1MIB,
        label: "1 MiB Vec<u8> result, one at a time (MiB/s)",
        unit: Unit::MibPerSec,
    },
    Row {
        short: "1 MiB result, ByteBuf",
        key: measure::RES_1MIB_BYTEBUF,
        peer_key: measure::RES_1MIB,
        label: "  same, cf with serde_bytes::ByteBuf (MiB/s)",
        unit: Unit::MibPerSec,
    },
    Row {
        short: "round trip p50",
        key: measure::RTT_P50,
        peer_key: measure::RTT_P50,
        label: "round trip p50 (µs)",
        unit: Unit::Micros,
    },
    Row {
        short: "round trip p50, TCP",
        key: measure::TCP_RTT_P50,
        peer_key: measure::RTT_P50,
        label: "  same, cf over TCP (µs)",
        unit: Unit::Micros,
    },
    Row {
        short: "ping-pong, one CPU",
        key: measure::RTT_P50_ONE_CPU,
        peer_key: measure::RTT_P50_ONE_CPU,
        label: "  raw ping-pong, both pinned to one CPU (µs)",
        unit: Unit::Micros,
    },
    Row {
        short: "ping-pong, two CPUs",
        key: measure::RTT_P50_TWO_CPUS,
        peer_key: measure::RTT_P50_TWO_CPUS,
        label: "  raw ping-pong, pinned to two CPUs (µs)",
        unit: Unit::Micros,
    },
    Row {
        short: "round trip p99",
        key: measure::RTT_P99,
        peer_key: measure::RTT_P99,
        label: "round trip p99 (µs)",
        unit: Unit::Micros,
    },
    Row {
        short: "round trip CPU / wall",
        key: measure::RTT_CPU,
        peer_key: measure::RTT_CPU,
        label: "round trip, CPU / wall (all processes)",
        unit: Unit::Plain,
    },
    Row {
        short: "start-up",
        key: measure::STARTUP,
        peer_key: measure::STARTUP,
        label: "start-up to first result, 2 workers (ms)",
        unit: Unit::Millis,
    },
    Row {
        short: "start-up, no spare",
        key: measure::STARTUP_NO_SPARE,
        peer_key: measure::STARTUP,
        label: "  same, cf without its spare worker (ms)",
        unit: Unit::Millis,
    },
    Row {
        short: "Slurm, 4 ready",
        key: measure::SLURM_READY,
        peer_key: measure::SLURM_READY,
        label: "cf on Slurm: build() to 4 workers ready (ms)",
        unit: Unit::Millis,
    },
    Row {
        short: "64 MiB argument",
        key: measure::ARG_BIG,
        peer_key: measure::ARG_BIG,
        label: "64 MiB argument (MiB/s)",
        unit: Unit::MibPerSec,
    },
    Row {
        short: "64 MiB argument, TCP",
        key: measure::TCP_ARG_BIG,
        peer_key: measure::ARG_BIG,
        label: "  same, cf over TCP (MiB/s)",
        unit: Unit::MibPerSec,
    },
    Row {
        short: "64 MiB result",
        key: measure::RES_BIG,
        peer_key: measure::RES_BIG,
        label: "64 MiB result (MiB/s)",
        unit: Unit::MibPerSec,
    },
    Row {
        short: "64 MiB result, TCP",
        key: measure::TCP_RES_BIG,
        peer_key: measure::RES_BIG,
        label: "  same, cf over TCP (MiB/s)",
        unit: Unit::MibPerSec,
    },
    Row {
        short: "crash -> next",
        key: measure::CRASH_NEXT,
        peer_key: measure::CRASH_NEXT,
        label: "crash done -> next result (ms)",
        unit: Unit::Millis,
    },
    Row {
        short: "submit crash -> next",
        key: measure::CRASH_SUBMIT_NEXT,
        peer_key: measure::CRASH_SUBMIT_NEXT,
        label: "submit crash -> next result (ms)",
        unit: Unit::Millis,
    },
    Row {
        short: "idle RSS",
        key: measure::IDLE_RSS,
        peer_key: measure::IDLE_RSS,
        label: "idle worker RSS (MiB)",
        unit: Unit::Mib,
    },
    Row {
        short: "idle CPU",
        key: measure::IDLE_CPU,
        peer_key: measure::IDLE_CPU,
        label: "idle pool, parent CPU in 2 s (ms)",
        unit: Unit::Millis,
    },
];

/// Three significant digits, without exponent.
fn sig3(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_owned()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

/// "1.00" -> "1", "0.500" -> "0.5".
fn trim_zeros(s: &str) -> String {
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

fn format_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Rate if v >= 1e6 => format!("{}M", sig3(v / 1e6)),
        Unit::Rate if v >= 1e3 => format!("{}k", sig3(v / 1e3)),
        Unit::Percent => format!("{v:.1}%"),
        Unit::Rate | Unit::Micros | Unit::Millis | Unit::MibPerSec | Unit::Mib | Unit::Plain => {
            sig3(v)
        }
    }
}

fn format_ratio(r: f64) -> String {
    format!("{}x", sig3(r))
}

/// The machine the numbers come from.
pub(crate) struct Machine {
    cores: usize,
    cpu: String,
    kernel: String,
    memory: String,
    /// The 1-minute load average when the run started.
    load: String,
    /// The commit of the cf checkout this runs from, if known.
    commit: String,
}

/// The 1-minute load average, from `/proc/loadavg`, for printing.
pub(crate) fn load_average() -> String {
    show_load(measure::load_average())
}

/// A load average for printing.
pub(crate) fn show_load(load: Option<f64>) -> String {
    load.map_or_else(|| "?".to_owned(), |l| format!("{l:.2}"))
}

/// Notes the load average read just before a column ran in its facts, with a warning (also on
/// stderr) when it was above the core count: then foreign work competed with the column.
pub(crate) fn record_load(results: &mut Results, load: Option<f64>, cores: usize) {
    let mut text = show_load(load);
    if load.is_some_and(|l| l > cores as f64) {
        eprintln!("warning: load average {text} is above the {cores} cores: foreign load");
        text.push_str(&format!(" (WARNING: above the {cores} cores)"));
    }
    results.info.insert("load average before".into(), text);
}

/// `git rev-parse --short HEAD` of the checkout this was built from, and whether the library's
/// sources had uncommitted changes when the run started.
fn commit() -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".to_owned();
    };
    let dirty = git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "cf-runtime",
        "cf-worker",
        "cf-macros",
    ])
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head} + uncommitted library changes")
    } else {
        head
    }
}

impl Machine {
    /// The number of cores (`available_parallelism`).
    pub(crate) fn cores(&self) -> usize {
        self.cores
    }

    pub(crate) fn detect() -> Machine {
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown CPU".to_owned(), |(_, v)| v.trim().to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
                let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(format!("{:.1} GiB RAM", kib / (1024.0 * 1024.0)))
            })
            .unwrap_or_else(|| "unknown RAM".to_owned());
        Machine {
            cores,
            cpu,
            kernel,
            memory,
            load: load_average(),
            commit: commit(),
        }
    }

    /// The machine, the command and the run's settings, for the Markdown file.
    pub(crate) fn markdown(&self, config: &Config) -> String {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let command = if args.is_empty() {
            "cargo run --release -p cf-bench".to_owned()
        } else {
            format!("cargo run --release -p cf-bench -- {}", args.join(" "))
        };
        format!(
            "Machine: {self}.\n\nCommand: `{command}` ({} mode: median of {} repetitions; \
             {} tiny tasks for cf and rayon, {} through Python's submit, {} through its map, {} \
             for procspawn, {} frames for raw pipes; {} round trips per repetition).",
            if config.quick { "quick" } else { "full" },
            config.reps,
            config.tiny,
            config.tiny_python,
            config.map_python,
            config.tiny_procspawn,
            config.tiny_raw,
            config.latency_samples,
        )
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cores (nproc), {}, Linux {}, {}; load average {} at start; cf commit {}",
            self.cores, self.cpu, self.kernel, self.memory, self.load, self.commit
        )
    }
}

/// The table: one row per metric, a column per system, then the ratios.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
    info: Vec<String>,
    /// For the chart: (row label, key, [cf/Python, cf/procspawn, cf/raw]).
    ratios: Vec<(&'static str, &'static str, [Option<f64>; 3])>,
}

impl Table {
    pub(crate) fn new(columns: &[(System, Results)]) -> Table {
        let results = |s: System| columns.iter().find(|(c, _)| *c == s).map(|(_, r)| r);
        let mut header = vec!["metric".to_owned()];
        header.extend(columns.iter().map(|(s, _)| s.name().to_owned()));
        header.extend(RATIO_PEERS.iter().map(|p| format!("cf/{}", p.name())));
        let mut notes: Vec<String> = Vec::new();
        let mut footnote = |text: String| -> usize {
            if let Some(at) = notes.iter().position(|n| *n == text) {
                return at + 1;
            }
            notes.push(text);
            notes.len()
        };
        let mut rows = Vec::new();
        let mut ratios = Vec::new();
        for row in &ROWS {
            let mut cells = vec![row.label.to_owned()];
            for (system, r) in columns {
                let key = if *system == System::Cf {
                    row.key
                } else {
                    row.peer_key
                };
                let mut cell = match r.value(key) {
                    Some(v) => format_value(v, row.unit),
                    None => "n/a".to_owned(),
                };
                if let Some(note) = r.notes.get(key) {
                    let n = footnote(format!("{}: {note}", system.name()));
                    cell.push_str(&format!(" [{n}]"));
                }
                cells.push(cell);
            }
            let cf = results(System::Cf).and_then(|r| r.value(row.key));
            let mut line = [None; 3];
            for (i, peer) in RATIO_PEERS.iter().enumerate() {
                let theirs = results(*peer).and_then(|r| r.value(row.peer_key));
                let ratio = match (cf, theirs) {
                    (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                    _ => None,
                };
                line[i] = ratio;
                cells.push(ratio.map_or_else(|| "-".to_owned(), format_ratio));
            }
            ratios.push((row.short, row.key, line));
            rows.push(cells);
        }
        let mut info = Vec::new();
        for (system, r) in columns {
            if !r.info.is_empty() {
                let facts: Vec<String> = r.info.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                info.push(format!("{}: {}", system.name(), facts.join(", ")));
            }
            let reps: Vec<String> = measure::ALL
                .iter()
                .filter(|k| r.reps(k) > 0)
                .map(|k| format!("{k}={}", r.reps(k)))
                .collect();
            if !reps.is_empty() {
                info.push(format!("{} repetitions: {}", system.name(), reps.join(" ")));
            }
        }
        Table {
            header,
            rows,
            notes,
            info,
            ratios,
        }
    }

    pub(crate) fn render_text(&self) -> String {
        let width = |col: usize| {
            std::iter::once(&self.header)
                .chain(&self.rows)
                .map(|r| r[col].chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.header.len()).map(width).collect();
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                if i == 0 {
                    out.push_str(cell);
                    out.push_str(&" ".repeat(pad));
                } else {
                    out.push_str("  ");
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = line(&self.header);
        out.push('\n');
        out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
        for row in &self.rows {
            out.push('\n');
            out.push_str(&line(row));
        }
        out.push_str("\n\nratios: cf's value divided by the peer's (rates: above 1 = cf faster; ");
        out.push_str("times and sizes: below 1 = cf better)\n");
        for (i, note) in self.notes.iter().enumerate() {
            out.push_str(&format!("[{}] {note}\n", i + 1));
        }
        for info in &self.info {
            out.push_str(&format!("{info}\n"));
        }
        out
    }

    pub(crate) fn render_markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("| {} |\n", self.header.join(" | ")));
        let align: Vec<&str> = (0..self.header.len())
            .map(|i| if i == 0 { "---" } else { "---:" })
            .collect();
        out.push_str(&format!("|{}|\n", align.join("|")));
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|c| {
                    c.trim()
                        .replace("->", "→")
                        .replace('|', "\\|")
                        .replace('<', "&lt;")
                        .replace('>', "&gt;")
                })
                .collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out.push_str(
            "\nRatios are cf's value divided by the peer's: for rates above 1 means cf is \
             faster; for times and sizes below 1 means cf is better.\n\n",
        );
        for (i, note) in self.notes.iter().enumerate() {
            out.push_str(&format!("{}. {note}\n", i + 1));
        }
        out.push('\n');
        for info in &self.info {
            out.push_str(&format!("- {info}\n"));
        }
        out
    }

    /// Two panels of bars on a log scale: cf ÷ peer for the rates (higher is better for cf) and
    /// for the times (lower is better for cf).
    pub(crate) fn render_svg(&self, path: &Path, machine: &Machine) -> Result<(), String> {
        let root = SVGBackend::new(path, (1500, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(
                &format!(
                    "cf ÷ peer: {} cores, {}, Linux {}",
                    machine.cores, machine.cpu, machine.kernel
                ),
                ("sans-serif", 16),
            )
            .map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(950);
        let rates = [
            measure::SUBMIT,
            measure::MAP,
            measure::CPU_1MS,
            measure::CPU_100US,
            measure::RES_1MIB,
            measure::ARG_BIG,
            measure::RES_BIG,
        ];
        let times = [
            measure::RTT_P50,
            measure::RTT_P99,
            measure::STARTUP,
            measure::CRASH_NEXT,
        ];
        self.panel(&left, &rates, "rates: cf ÷ peer (above 1: cf faster)")?;
        self.panel(&right, &times, "times: cf ÷ peer (below 1: cf faster)")?;
        root.present().map_err(|e| e.to_string())
    }

    fn panel(
        &self,
        area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
        keys: &[&str],
        title: &str,
    ) -> Result<(), String> {
        const SLOTS: i32 = 4;
        const COLORS: [RGBColor; 3] = [
            RGBColor(0x30, 0x6f, 0xb0),
            RGBColor(0xe0, 0x8a, 0x1e),
            RGBColor(0x5a, 0x5a, 0x5a),
        ];
        let groups: Vec<_> = keys
            .iter()
            .filter_map(|k| self.ratios.iter().find(|(_, key, _)| key == k))
            .collect();
        let values: Vec<f64> = groups
            .iter()
            .flat_map(|(_, _, r)| r.iter().flatten().copied())
            .filter(|v| *v > 0.0)
            .collect();
        let lo = values.iter().copied().fold(1.0f64, f64::min);
        let hi = values.iter().copied().fold(1.0f64, f64::max);
        let lo = 10f64.powf(lo.log10().floor() - 0.01).min(0.1);
        let hi = 10f64.powf(hi.log10().ceil() + 0.01).max(10.0);
        let n = groups.len() as i32 * SLOTS;
        let names: Vec<String> = groups
            .iter()
            .map(|(label, _, _)| label.replace("->", "→"))
            .collect();
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((0..n).into_segmented(), (lo..hi).log_scale())
            .map_err(|e| e.to_string())?;
        let label = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) if i % SLOTS == 1 => {
                names.get((i / SLOTS) as usize).cloned().unwrap_or_default()
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n as usize + 1)
            .x_label_formatter(&label)
            .y_label_formatter(&|v| format!("{}x", trim_zeros(&sig3(*v))))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(SegmentValue::Exact(0), 1.0), (SegmentValue::Exact(n), 1.0)],
                BLACK.stroke_width(1),
            )))
            .map_err(|e| e.to_string())?;
        for (s, peer) in RATIO_PEERS.iter().enumerate() {
            let color = COLORS[s];
            let bars: Vec<(i32, f64)> = groups
                .iter()
                .enumerate()
                .filter_map(|(g, (_, _, r))| r[s].map(|v| (g as i32 * SLOTS + s as i32, v)))
                .collect();
            chart
                .draw_series(bars.iter().map(|&(x, v)| {
                    Rectangle::new(
                        [
                            (SegmentValue::Exact(x), 1.0),
                            (SegmentValue::Exact(x + 1), v),
                        ],
                        color.filled(),
                    )
                }))
                .map_err(|e| e.to_string())?
                .label(format!("cf ÷ {}", peer.name()))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            chart
                .draw_series(bars.iter().map(|&(x, v)| {
                    Text::new(
                        format_ratio(v),
                        (
                            SegmentValue::Exact(x),
                            if v >= 1.0 { v * 1.15 } else { v / 1.05 },
                        ),
                        ("sans-serif", 10),
                    )
                }))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())
    }
}
