//! The gRPC transport: Go's `keyprovider.KeyProviderService`.

pub(crate) mod client;
#[cfg(feature = "sdk-grpc")]
pub(crate) mod server;

#[rustfmt::skip]
#[allow(
    missing_docs,
    unreachable_pub,
    unused_qualifications,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "generated code"
)]
pub(crate) mod generated;
