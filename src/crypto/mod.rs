//! Cryptography: password hashing, opaque tokens, secrets at rest, JWT signing keys.

pub mod hashpool;
pub mod jwt;
pub mod password;
pub mod private_file;
pub mod secretbox;
pub mod tokens;
pub mod totp;
