use std::marker::PhantomData;

use cf::task;
use serde::{Deserialize, Serialize};

/// A serde value that must stay on the thread that made it.
#[derive(Serialize, Deserialize)]
struct Handle {
    id: u64,
    not_send: PhantomData<*const ()>,
}

#[task]
fn open(handle: Handle) -> u64 {
    handle.id
}

fn main() {}
