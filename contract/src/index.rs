//! Bundle chunk index: see the module docs once written.
