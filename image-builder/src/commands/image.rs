use crate::Error;
#[derive(Debug, clap::Args)]
pub struct ImageArgs {}
pub fn run(_args: ImageArgs) -> Result<(), Error> {
    todo!()
}
