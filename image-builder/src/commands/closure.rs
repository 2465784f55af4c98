use crate::Error;
#[derive(Debug, clap::Args)]
pub struct ClosureArgs {}
pub fn run(_args: ClosureArgs) -> Result<(), Error> {
    todo!()
}
