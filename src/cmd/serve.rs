//! `rtmfp serve`.

use crate::cli::{ServeArgs, exit};

pub fn run(_args: ServeArgs) -> i32 {
    eprintln!("rtmfp serve: not implemented yet");
    exit::FAILURE
}
