fn main() {
    std::process::exit(host::cli::main());
}
