//! A held SQL client session (`mariadb --batch`, `psql -A -t`): statements written to its
//! stdin one batch at a time, each answer read up to a marker line, so the plugin knows
//! when the server has done what it asked (a read lock is held, a backup has started)
//! before it takes the next step. What the session holds on the server (a lock, a
//! non-exclusive base backup) ends with it if the plugin dies: the client is killed with
//! the action, and the server ends its session.

use crate::exec::Process;
use crate::io::{StreamReader, StreamWriter};
use crate::{self as sdk, Cmd, Error};
use std::io::{BufRead, BufReader, Write};

pub struct Session {
    /// The server, as errors name it (`mariadb`, `postgresql`).
    system: &'static str,
    proc: Process,
    stdin: Option<StreamWriter>,
    stdout: BufReader<StreamReader>,
    markers: u32,
}

impl Session {
    /// Start the client `cmd`, which must read statements from stdin, print each result
    /// as bare lines (`mariadb --batch --skip-column-names --unbuffered`, `psql -A -t -q`)
    /// and flush after each; `system` names the server in errors.
    pub fn open(cmd: Cmd<'_>, system: &'static str) -> Result<Session, Error> {
        let proc = cmd.stdin().spawn()?;
        let stdin = proc
            .take_stdin()
            .ok_or_else(|| sdk::internal("the session's stdin was not opened"))?;
        let stdout = proc
            .take_stdout()
            .ok_or_else(|| sdk::internal("the session's stdout was not opened"))?;
        Ok(Session {
            system,
            proc,
            stdin: Some(StreamWriter(stdin)),
            stdout: BufReader::new(StreamReader(stdout)),
            markers: 0,
        })
    }

    /// Run `sql` (statements ending in `;`) and return the lines it printed, once the
    /// server has answered all of it.
    pub fn query(&mut self, sql: &str) -> Result<Vec<String>, Error> {
        self.markers += 1;
        let marker = format!("coffer-marker-{}", self.markers);
        let text = format!("{sql}\nSELECT '{marker}';\n");
        let w = self
            .stdin
            .as_mut()
            .ok_or_else(|| sdk::internal("the session is closed"))?;
        if let Err(e) = w.write_all(text.as_bytes()).and_then(|_| w.flush()) {
            return Err(self.died(&format!("writing to it: {e}")));
        }
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.stdout.read_line(&mut line) {
                Ok(0) => return Err(self.died("it ended before answering")),
                Ok(_) => {}
                Err(e) => return Err(self.died(&format!("reading its answer: {e}"))),
            }
            let line = line.trim_end_matches('\n').to_string();
            if line == marker {
                return Ok(lines);
            }
            lines.push(line);
        }
    }

    /// Why the client stopped: its exit and the end of its stderr.
    fn died(&mut self, what: &str) -> Error {
        self.stdin = None;
        let why = match self.proc.wait() {
            Ok(st) => match sdk::check_exit(self.system, &st) {
                Err(e) => sdk::error_text(&e),
                Ok(()) => "it exited 0".into(),
            },
            Err(e) => sdk::error_text(&e),
        };
        Error::Remote(sdk::RemoteError {
            system: self.system.into(),
            code: None,
            message: format!("the session {what}: {why}"),
            retryable: false,
        })
    }

    /// End the session: stdin closed, the client must exit 0.
    pub fn close(mut self) -> Result<(), Error> {
        self.stdin = None;
        let st = self.proc.wait()?;
        sdk::check_exit(self.system, &st)
    }
}
