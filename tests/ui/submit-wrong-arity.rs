use cf::{ProcessPoolExecutor, task};

#[task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn main() -> Result<(), cf::Error> {
    let pool = ProcessPoolExecutor::new()?;
    let _sum = pool.submit(add, (1, 2, 3))?;
    Ok(())
}
