//! The fault-injecting Range server lives in `flipside-test-support`.
pub use flipside_test_support::server::{Fault, Server};
