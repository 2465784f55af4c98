//! flipside's on-device updater: `check`, `install` (streamed into the inactive slot, every
//! chunk verified before it is written, resumable, delta from the running slot), health checks
//! with commit or rollback, `status`, and a manual `rollback`.
//!
//! Pure decisions ([`select`], [`plan`], [`running`]'s parsers, [`config`]) are separate from
//! I/O ([`device`], [`http`], [`record`], [`health`]); [`install`] runs its named steps in
//! order. The repository is reached through [`source::UpdateSource`], behind which the TUF client
//! plugs in; its mirrors are asked by one rule, [`mirrors::Failover`].

pub mod cli;
pub mod commands;
pub mod config;
pub mod device;
pub mod durable;
pub mod error;
pub mod events;
pub mod exit;
pub mod fallback;
pub mod file;
pub mod floor;
pub mod health;
pub mod http;
pub mod install;
pub mod lock;
pub mod mirrors;
pub mod offer;
pub mod plan;
pub mod progress;
pub mod record;
pub mod redirect;
pub mod running;
pub mod select;
pub mod source;
pub mod status;
pub mod system;
pub mod tls;
pub mod tuf_client;
pub mod verified;
pub mod window;

pub use error::{Error, Result};
pub use exit::ExitClass;
