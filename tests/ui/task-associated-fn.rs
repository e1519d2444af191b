use cf::task;

struct Counter;

impl Counter {
    #[task]
    fn make(start: u64) -> u64 {
        start
    }
}

fn main() {}
