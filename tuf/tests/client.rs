//! The device-side TUF client against repositories published by flipside-repository, served
//! from a directory: the normal workflow, then one test per attack, each hand-crafted on a
//! copy of the repository (an attacker's mirror), each asserting the refusal's variant and
//! that the device's metadata store is byte-for-byte unchanged but for roles verified before
//! the refused one.

#[path = "client/helpers.rs"]
mod helpers;

#[path = "client/attacks.rs"]
mod attacks;
#[path = "client/delegations.rs"]
mod delegations;
#[path = "client/persistence.rs"]
mod persistence;
#[path = "client/sigstore.rs"]
mod sigstore;
#[path = "client/workflow.rs"]
mod workflow;
