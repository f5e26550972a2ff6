//! Child processes of the tests: the `takedown` binary and the servers it
//! talks to, killed when a test ends however it ends.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A child process killed when dropped, so a failing test leaves none behind.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `takedown --data DATA`, ready for a subcommand.
pub(crate) fn takedown(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_takedown"));
    c.arg("--data").arg(data);
    c
}

/// A `takedown` child whose stdout is read line by line and whose stderr
/// goes to a file, shown when the child exits before saying what it should.
pub(crate) struct Watched {
    pub(crate) child: Killed,
    out: BufReader<ChildStdout>,
    log: PathBuf,
}

impl Watched {
    pub(crate) fn spawn(mut command: Command, log: PathBuf) -> Watched {
        let mut child = Killed(
            command
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let out = BufReader::new(child.0.stdout.take().unwrap());
        Watched { child, out, log }
    }

    /// Reads stdout lines until one starts with `prefix`; returns the rest.
    pub(crate) fn line(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            if self.out.read_line(&mut line).unwrap() == 0 {
                let _ = self.child.0.wait();
                let stderr = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("the child exited before printing {prefix:?}; its stderr:\n{stderr}");
            }
            if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }
}

/// Stops a child with SIGTERM and requires a clean exit.
pub(crate) fn terminate(child: &mut Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exited with {exit}");
}
