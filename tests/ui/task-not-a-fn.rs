use cf::task;

#[task]
struct Adder {
    offset: i64,
}

fn main() {}
