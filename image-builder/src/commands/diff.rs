use crate::Error;
#[derive(Debug, clap::Args)]
pub struct DiffArgs {}
pub fn run(_args: DiffArgs) -> Result<(), Error> {
    todo!()
}
