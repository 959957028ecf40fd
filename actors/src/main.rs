//! The `pinion` binary: parses the command line and hands off to `pinion_actors::cli`.

use clap::Parser;
use pinion::exit::FatalReason;

fn main() {
    let arguments = match pinion_actors::cli::Arguments::try_parse() {
        Ok(arguments) => arguments,
        Err(error) => {
            // clap exits 2 on usage errors, but 2 is pinion's documented ENOSPC code: usage
            // errors are exit 1 like every other bad input; --help and --version are 0.
            let code = if error.use_stderr() {
                FatalReason::Cli.exit_code()
            } else {
                0
            };
            let _ = error.print();
            std::process::exit(code);
        }
    };
    pinion_actors::cli::init_logging();
    let code = pinion_actors::cli::run(arguments);
    std::process::exit(code);
}
