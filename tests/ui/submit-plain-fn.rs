use cf::ProcessPoolExecutor;

fn double(x: u64) -> u64 {
    x * 2
}

fn main() -> Result<(), cf::Error> {
    let pool = ProcessPoolExecutor::new()?;
    let _doubled = pool.submit(double, 21)?;
    Ok(())
}
