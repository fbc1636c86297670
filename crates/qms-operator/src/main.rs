//! `qms-operator`: runs a quality review of every GitHub pull request as a declarative workflow.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    qms_operator::cli::main()
}
