use cf::{ProcessPoolExecutor, task};

#[task]
fn shout(text: String) -> String {
    text.to_uppercase()
}

fn main() -> Result<(), cf::Error> {
    let pool = ProcessPoolExecutor::new()?;
    let _loud = pool.submit(shout, "hello")?;
    Ok(())
}
