//! Lines on standard output that behave in a pipe: when the reader goes away (`cpe-config tasks |
//! head -1`), the command ends quietly with exit code 0, as a Unix tool does, instead of panicking.

use std::io::Write;

/// Writes one line; see [`say!`](crate::say).
pub fn line(text: std::fmt::Arguments<'_>) {
    if let Err(error) = writeln!(std::io::stdout().lock(), "{text}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("cpe-config: cannot write to standard output: {error}");
        std::process::exit(2);
    }
}

/// `println!` for commands: a closed standard output ends the process with 0, quietly.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say::line(format_args!($($arg)*))
    };
}
