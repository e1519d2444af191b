use cf::ProcessPoolExecutor;

fn main() -> Result<(), cf::Error> {
    let pool = ProcessPoolExecutor::new()?;
    let _doubled = pool.submit(|x: u64| x * 2, 21)?;
    Ok(())
}
