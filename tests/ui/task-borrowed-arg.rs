use cf::task;

#[task]
fn count_words(text: &str) -> usize {
    text.split_whitespace().count()
}

fn main() {}
