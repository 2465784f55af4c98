//! `flipside`: the updater's command line with the production update source.

use std::process::ExitCode;

fn main() -> ExitCode {
    one_malloc_arena();
    flipside_updater::cli::main_with(&flipside_updater::source::tuf_source)
}

/// glibc gives each thread that allocates its own arena, and memory freed in one is not reused
/// by another: with the install's few worker threads that costs about 1 MiB of resident memory
/// for nothing. The threads do not contend on the allocator (large, long-lived buffers).
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
