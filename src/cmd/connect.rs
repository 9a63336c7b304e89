//! `rtmfp connect`.

use crate::cli::{ConnectArgs, exit};

pub fn run(_args: ConnectArgs) -> i32 {
    eprintln!("rtmfp connect: not implemented yet");
    exit::FAILURE
}
