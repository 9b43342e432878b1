//! Subcommands of the `portcullis` binary that are more than a call or two.

pub mod admin;
pub mod audit;
pub mod remote;
