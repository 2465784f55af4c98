use crate::{Class, Error};
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    Add,
}
pub fn run(_cmd: StoreCommand) -> Result<(), Error> {
    todo!()
}
/// The exit class of a store failure.
pub(crate) fn class(_e: &flipside_store::Error) -> Class {
    Class::Store
}
