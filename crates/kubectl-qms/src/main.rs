//! `kubectl-qms`: kubectl runs it for `kubectl qms …` when it is on PATH (krew convention).
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = kubectl_qms::cli::Cli::parse();
    match kubectl_qms::run(cli).await {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
