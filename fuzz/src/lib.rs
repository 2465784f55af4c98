//! flipside's fuzz targets: their bodies live in [`harness`] so that the normal test suite
//! replays the corpora through the same code (see `fuzz/README.md`).

pub mod harness;
