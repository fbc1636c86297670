//! `qms-operator`: runs a quality review of every GitHub pull request as a declarative workflow.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "qms-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the four CustomResourceDefinitions as a YAML stream, or write one file per kind.
    Crds {
        /// Write `<plural>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds { out_dir } => match print_or_write_crds(out_dir.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("qms-operator: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn print_or_write_crds(out_dir: Option<&std::path::Path>) -> Result<(), String> {
    let Some(dir) = out_dir else {
        let yaml = qms_api::crds::all_yaml().map_err(|e| format!("cannot render the CRDs: {e}"))?;
        print!("{yaml}");
        return Ok(());
    };
    for (file, crd) in qms_api::crds::all() {
        let yaml = qms_api::crds::to_yaml(&crd).map_err(|e| format!("cannot render {file}: {e}"))?;
        let path = dir.join(file);
        std::fs::write(&path, yaml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
