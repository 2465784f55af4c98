use crate::{Class, Error};
#[derive(Debug, clap::Subcommand)]
pub enum RepoCommand {
    Init,
}
pub fn run(_cmd: RepoCommand) -> Result<(), Error> {
    todo!()
}
/// The exit class of a repository failure.
pub(crate) fn class(_e: &flipside_repository::Error) -> Class {
    Class::Repository
}
