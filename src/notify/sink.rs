//! Where notices go: a webhook (a JSON POST, retried with backoff, each try within its
//! timeout) and a command hook (the notice as JSON on its stdin, within its timeout).
//! Each sink runs on a task of its own behind a bounded queue, so a dead webhook or a
//! hung command never holds the run: when a queue is full the notice is dropped for that
//! sink and logged. Failures are logged, never fatal. A webhook's URL is never logged in
//! full (its path is the secret of a Slack or Mattermost hook): [`redact_url`].

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Notices waiting for one sink at most; more are dropped (and logged).
const QUEUE: usize = 64;
/// The first wait before a webhook is tried again; it doubles on each try.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// A webhook: every notice is POSTed to `url` as JSON.
#[derive(Clone, PartialEq)]
pub struct Webhook {
    pub url: String,
    /// Each try gives up after this (connecting, sending and the answer).
    pub timeout: Duration,
    /// Tries after the first, with a backoff from 1 s doubling.
    pub retries: u32,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// A command: run with the notice as JSON on its stdin.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    /// The program and its arguments (no shell).
    pub run: Vec<String>,
    /// Killed after this.
    pub timeout: Duration,
}

/// `https://hooks.slack.com/…`: the scheme and host, never the path or query (which
/// carry the hook's token), nor a user or password.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(a webhook URL)".to_string();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let tail = if rest.len() > authority.len() {
        "/…"
    } else {
        ""
    };
    format!("{scheme}://{host}{tail}")
}

/// One sink's task and its queue.
pub struct Running {
    queue: mpsc::Sender<String>,
    task: JoinHandle<()>,
    name: String,
}

impl Running {
    /// Queues one JSON body; never waits.
    pub fn send(&self, body: &str) {
        if let Err(error) = self.queue.try_send(body.to_string()) {
            tracing::warn!(sink = %self.name, %error, "alert not queued for this sink (it is behind)");
        }
    }

    /// Closes the queue and waits for what is queued, at most until `deadline`.
    pub async fn finish(self, deadline: tokio::time::Instant) {
        drop(self.queue);
        let mut task = self.task;
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            tracing::warn!(sink = %self.name, "alerts still being delivered when the run ended: given up");
            task.abort();
        }
    }
}

impl Webhook {
    pub fn start(self) -> Running {
        let (queue, mut receiver) = mpsc::channel::<String>(QUEUE);
        let name = redact_url(&self.url);
        let task = tokio::spawn(async move {
            let client = match reqwest::Client::builder().timeout(self.timeout).build() {
                Ok(client) => client,
                Err(error) => {
                    tracing::error!(webhook = %redact_url(&self.url), error = %error, "cannot set up the webhook client: its alerts are not sent");
                    return;
                }
            };
            while let Some(body) = receiver.recv().await {
                self.deliver(&client, body).await;
            }
        });
        Running { queue, task, name }
    }

    async fn deliver(&self, client: &reqwest::Client, body: String) {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 0..=self.retries {
            let sent = client
                .post(&self.url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let why = match sent {
                Ok(answer) if answer.status().is_success() => return,
                Ok(answer) => format!("it answered {}", answer.status()),
                // The error's text names the URL: only its kind is logged.
                Err(error) if error.is_timeout() => {
                    format!("no answer within {} s", self.timeout.as_secs_f64())
                }
                Err(error) if error.is_connect() => "cannot connect".to_string(),
                Err(_) => "the request failed".to_string(),
            };
            let url = redact_url(&self.url);
            if attempt == self.retries {
                tracing::warn!(webhook = %url, %why, tries = attempt + 1, "alert not delivered");
                return;
            }
            tracing::info!(webhook = %url, %why, retry_in_s = backoff.as_secs(), "alert not delivered yet; trying again");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
}

impl Hook {
    pub fn start(self) -> Running {
        let (queue, mut receiver) = mpsc::channel::<String>(QUEUE);
        let name = self.run.first().cloned().unwrap_or_default();
        let task = tokio::spawn(async move {
            while let Some(body) = receiver.recv().await {
                if let Err(why) = self.deliver(&body).await {
                    tracing::warn!(command = %self.run.join(" "), %why, "alert command failed");
                }
            }
        });
        Running { queue, task, name }
    }

    async fn deliver(&self, body: &str) -> Result<(), String> {
        let Some((program, args)) = self.run.split_first() else {
            return Err("no command given".to_string());
        };
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start it: {e}"))?;
        let timeout = self.timeout;
        let run = async {
            if let Some(mut stdin) = child.stdin.take() {
                // A command that does not read its input still runs.
                let _ = stdin.write_all(body.as_bytes()).await;
                let _ = stdin.write_all(b"\n").await;
            }
            child.wait_with_output().await
        };
        match tokio::time::timeout(timeout, run).await {
            Err(_) => Err(format!(
                "it did not end within {} s: killed",
                timeout.as_secs_f64()
            )),
            Ok(Err(error)) => Err(error.to_string()),
            Ok(Ok(output)) if output.status.success() => Ok(()),
            Ok(Ok(output)) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let last = stderr.lines().last().unwrap_or("").trim().to_string();
                Err(format!("it exited with {}: {last}", output.status))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_keep_only_their_host() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_url("http://user:pw@127.0.0.1:9000/hook?token=s"),
            "http://127.0.0.1:9000/…"
        );
        assert_eq!(redact_url("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        let hook = Webhook {
            url: "https://hooks.slack.com/services/T/B/SECRET".to_string(),
            timeout: Duration::from_secs(5),
            retries: 3,
        };
        assert!(!format!("{hook:?}").contains("SECRET"));
    }

    #[tokio::test]
    async fn a_command_hook_gets_the_notice_on_stdin_and_a_hung_one_is_killed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("got.json");
        let hook = Hook {
            run: vec![
                "sh".to_string(),
                "-c".to_string(),
                format!("cat > {}", out.display()),
            ],
            timeout: Duration::from_secs(10),
        };
        hook.deliver("{\"text\":\"hi\"}").await.expect("runs");
        let got = std::fs::read_to_string(&out).expect("written");
        assert_eq!(got.trim(), "{\"text\":\"hi\"}");
        let hung = Hook {
            run: vec!["sleep".to_string(), "30".to_string()],
            timeout: Duration::from_millis(200),
        };
        let why = hung.deliver("{}").await.expect_err("killed");
        assert!(why.contains("did not end within 0.2 s"), "{why}");
        let failing = Hook {
            run: vec![
                "sh".to_string(),
                "-c".to_string(),
                "echo nope >&2; exit 3".to_string(),
            ],
            timeout: Duration::from_secs(10),
        };
        let why = failing.deliver("{}").await.expect_err("fails");
        assert!(why.contains("nope"), "{why}");
        let missing = Hook {
            run: vec!["/nonexistent/zdm-pager".to_string()],
            timeout: Duration::from_secs(1),
        };
        assert!(missing.deliver("{}").await.is_err());
    }
}
