use cf::task;

#[task(retries = 3)]
fn slow(n: u64) -> u64 {
    n
}

fn main() {}
