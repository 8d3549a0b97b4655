//! The `taskvec` command-line tool.

use clap::Parser;

fn main() {
    let cli = taskvec::cli::Cli::parse();
    if let Err(e) = taskvec::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
