use std::borrow::Cow;

use cf::task;

#[task]
fn shout(text: Cow<'_, str>) -> String {
    text.to_uppercase()
}

fn main() {}
