//! What the commands print. `println!` panics when standard output is a closed pipe
//! (`ember validate -f config/ | head -3`); here a closed pipe ends the command quietly, with
//! status 0 as far as the output was concerned, like other command-line tools.

use std::io::{ErrorKind, Write};

/// Writes one line to standard output; exits the process quietly if the reader is gone.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| {
        out.write_all(b"\n")?;
        out.flush()
    });
    if let Err(e) = written
        && e.kind() == ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// Writes one line to standard error, ignoring a closed stream (there is nowhere else to say it).
pub fn error_line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}
