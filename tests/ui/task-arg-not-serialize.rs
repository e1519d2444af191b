use cf::task;

struct Config {
    verbose: bool,
}

#[task]
fn run(config: Config, n: u64) -> u64 {
    if config.verbose { n } else { 0 }
}

fn main() {}
