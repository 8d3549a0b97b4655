//! The `taskvec` command-line tool.

use clap::Parser;

fn main() {
    let cli = taskvec::cli::Cli::parse();
    // The command runs on one of rayon's worker threads, so that the kernels' parallel loops
    // split work between the pool's threads directly instead of handing each loop to the pool
    // and blocking this thread until it is done (two thread switches per loop).
    let r = if cli.serves() {
        taskvec::cli::run(cli)
    } else {
        rayon::ThreadPoolBuilder::new()
            .stack_size(16 << 20)
            .build_global()
            .ok();
        rayon::scope(|_| taskvec::cli::run(cli))
    };
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
