use cf::task;

#[task]
fn sum(count: usize, args: ...) -> usize {
    count
}

fn main() {}
