//! The `wirelab` binary: the command of [`wirelab_cli`] over the built-in stacks.

fn main() -> std::process::ExitCode {
    wirelab_cli::main_with(wirelab::builtin_stacks())
}
