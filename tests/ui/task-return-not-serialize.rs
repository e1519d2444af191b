use cf::task;

struct Report {
    lines: Vec<String>,
}

#[task]
fn report(n: u64) -> Report {
    Report { lines: vec![n.to_string()] }
}

fn main() {}
