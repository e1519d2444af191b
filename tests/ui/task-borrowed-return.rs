use cf::task;

#[task]
fn greeting() -> &'static str {
    "hello"
}

fn main() {}
