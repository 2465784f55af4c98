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
