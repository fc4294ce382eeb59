//! The `wirelab` command with this crate's stack registered beside the built-in ones, so that `--stack capped-smoltcp`, `--diff smoltcp,capped-smoltcp` and `conformance --stacks capped-smoltcp` work like they do for the built-in stacks.

fn main() -> std::process::ExitCode {
    let mut stacks = wirelab::builtin_stacks();
    stacks.register_fn("capped-smoltcp", custom_smoltcp::CappedSmoltcp::new);
    wirelab_cli::main_with(stacks)
}
