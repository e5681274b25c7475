//! Runs `zdm demo` as a child process and reads what it prints, as a person would.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A running `zdm demo` and the facts it printed.
pub struct DemoProcess {
    pub child: Child,
    pub output: Vec<String>,
    pub primary_url: String,
    pub replica_url: Option<String>,
    pub pids: Vec<i32>,
    pub root: PathBuf,
    lines: mpsc::Receiver<String>,
}

impl DemoProcess {
    /// Starts `zdm demo --no-console` with `args` and waits until it says it is running.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(super::zdm_binary())
            .arg("demo")
            .arg("--no-console")
            .args(args)
            .env(
                "ZDM_LOG_FILE",
                std::env::temp_dir().join("zdm-test-demo.log"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn zdm demo");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut demo = DemoProcess {
            child,
            output: Vec::new(),
            primary_url: String::new(),
            replica_url: None,
            pids: Vec::new(),
            root: PathBuf::new(),
            lines,
        };
        demo.read_until("psql \"$DATABASE_URL\"", Duration::from_secs(180));
        for line in demo.output.clone() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first() {
                Some(&"primary") if words.len() > 1 && words[1].starts_with("postgres://") => {
                    demo.primary_url = words[1].to_string();
                }
                Some(&"replica") if words.len() > 1 && words[1].starts_with("postgres://") => {
                    demo.replica_url = Some(words[1].to_string());
                }
                Some(&"files") => demo.root = PathBuf::from(words[1]),
                _ => {}
            }
            if let Some(pid) = line.split("(pid ").nth(1) {
                let digits: String = pid.chars().take_while(char::is_ascii_digit).collect();
                demo.pids.push(digits.parse().expect("pid"));
            }
        }
        assert!(
            !demo.primary_url.is_empty(),
            "no primary URL in {:?}",
            demo.output
        );
        demo
    }

    /// Collects stdout lines until one contains `needle`; panics with the output on timeout.
    pub fn read_until(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.output.push(line);
                    if found {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!("zdm demo exited ({status}) early: {:?}", self.output);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("zdm demo never printed {needle:?}: {:?}", self.output);
    }

    /// Sends `signal` to the demo process.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal zdm demo");
    }

    /// Waits for the process to exit (a hang fails the test after `timeout`).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_at_most(timeout) {
            Some(status) => status,
            None => panic!("zdm demo did not exit: {:?}", self.output),
        }
    }

    fn wait_at_most(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                    self.output.push(line);
                }
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        // A failed test must not leave the demo (and its servers) behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
            if self.wait_at_most(Duration::from_secs(60)).is_none() {
                let _ = self.child.kill();
            }
        }
    }
}
