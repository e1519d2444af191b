use cf::task;

#[task]
extern "C" fn double(n: u32) -> u32 {
    n * 2
}

fn main() {}
