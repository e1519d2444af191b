use cf::task;
use serde::{Deserialize, Serialize};

/// A value of its own that happens to be called `Result`.
#[derive(Serialize, Deserialize)]
struct Result<T> {
    score: T,
}

#[task]
fn grade(score: u32) -> Result<u32> {
    Result { score }
}

fn main() {}
