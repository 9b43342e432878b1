//! Portcullis: a self-hosted authentication and authorization service.
//!
//! The binary (`portcullis serve`) is the usual way to run it; the library exposes the
//! same service type (`domain::Portcullis`) and the HTTP application (`app`) so Rust
//! services can embed it or guard their own routes with it.

pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod recorder;
pub mod store;

pub use domain::Portcullis;
pub mod app;
pub mod cli;
pub mod http;
pub mod ui;
