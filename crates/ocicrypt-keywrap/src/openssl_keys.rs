//! Reading password-protected private keys with OpenSSL (feature `openssl`).
//!
//! Superseded by [`crate::keys`], which reads every key form (and calls these for the
//! encrypted ones); kept until the schemes use it.

pub use crate::keys::encrypted::{encrypted_pem, encrypted_pkcs8_der};
