use cf::task;

struct Counter {
    count: u64,
}

impl Counter {
    #[task]
    fn get(self) -> u64 {
        self.count
    }
}

fn main() {}
