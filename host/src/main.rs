fn main() {
    // Like other Unix filters: a closed pipe (`host rank ... | head`) ends the process quietly
    // instead of panicking in `println!`.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(host::cli::main());
}
