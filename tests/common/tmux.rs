//! Drives a program in a detached tmux session, as a person at a terminal would: keys in,
//! the screen read back with `capture-pane`. Each session has its own tmux server socket.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A tmux server with one session running `shell_command`; killed when dropped.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `shell_command` (run by `sh -c`) in a `width`x`height` terminal.
    pub fn start(shell_command: &str, width: u16, height: u16) -> Self {
        let socket = format!(
            "zdm-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Tmux { socket };
        let output = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "console",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            shell_command,
        ]);
        assert!(output.status.success(), "tmux new-session: {output:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux is installed")
    }

    /// The visible screen as text.
    pub fn screen(&self) -> String {
        let output = self.run(&["capture-pane", "-p", "-t", "console"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The pid of the shell running in the pane.
    pub fn pane_pid(&self) -> i32 {
        let output = self.run(&["list-panes", "-t", "console", "-F", "#{pane_pid}"]);
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("a pane pid")
    }

    /// Sends keys in tmux's notation (`q`, `Enter`, `Escape`, `C-c`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "console"];
        args.extend_from_slice(keys);
        let output = self.run(&args);
        assert!(output.status.success(), "tmux send-keys: {output:?}");
    }

    /// Sends text literally, character by character.
    pub fn type_text(&self, text: &str) {
        let output = self.run(&["send-keys", "-t", "console", "-l", text]);
        assert!(output.status.success(), "tmux send-keys: {output:?}");
    }

    /// Waits until `ready(screen)` holds; panics with the last screen after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("the screen never showed {what} within {timeout:?}:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the screen contains `needle`.
    pub fn wait_for_text(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for(needle, timeout, |screen| screen.contains(needle))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
