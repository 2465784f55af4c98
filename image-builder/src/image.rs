//! placeholder
use crate::Class;
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not yet")]
    NotYet,
}
impl Error {
    pub fn class(&self) -> Class {
        Class::Internal
    }
}
/// The exit class of a bundle failure.
pub(crate) fn bundle_class(_e: &flipside_bundle::Error) -> Class {
    Class::Internal
}
