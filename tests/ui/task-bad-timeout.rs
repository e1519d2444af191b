use cf::task;

#[task(timeout = 5)]
fn slow(n: u64) -> u64 {
    n
}

fn main() {}
