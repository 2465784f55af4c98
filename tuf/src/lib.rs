//! TUF metadata, signing and verification.
