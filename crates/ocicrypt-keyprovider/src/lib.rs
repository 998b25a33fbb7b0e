#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Items behind a feature, marked as such in the docs.
macro_rules! cfg_feature {
    ($feature:literal, $($item:item)*) => {
        $(
            #[cfg(feature = $feature)]
            #[cfg_attr(docsrs, doc(cfg(feature = $feature)))]
            $item
        )*
    };
}

mod config;
mod error;
pub mod protocol;
mod wrapper;

cfg_feature! { "cmd", mod cmd; }
cfg_feature! { "grpc", mod grpc; }
cfg_feature! { "sdk", pub mod sdk; }
cfg_feature! { "codegen", pub mod codegen; }

pub use config::{CONFIG_ENV, Command, Config, GrpcTls, Invocation, ProviderConfig};
pub use error::Error;
pub use protocol::ProviderError;
pub use wrapper::{KeyProviderKeyWrapper, MAX_UNWRAP_CALLS, Options, wrappers_from_config};
