//! Values built once per test process (assets, Debian trees, release worlds) and shared by the
//! tests that run at the same time: the first caller builds, the others wait for its result.

use std::sync::{Mutex, OnceLock};

use crate::Result;

/// `cell`'s value, built by `build` under `lock` if no caller has built it yet. A failed build
/// leaves the cell empty, so the next caller tries again (and reports its own error).
pub fn get_or_build<'a, T>(
    cell: &'a OnceLock<T>,
    lock: &Mutex<()>,
    build: impl FnOnce() -> Result<T>,
) -> Result<&'a T> {
    if let Some(value) = cell.get() {
        return Ok(value);
    }
    // A test that panicked while building poisoned nothing we rely on: the cell is still empty.
    let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(value) = cell.get() {
        return Ok(value);
    }
    let value = build()?;
    Ok(cell.get_or_init(|| value))
}
