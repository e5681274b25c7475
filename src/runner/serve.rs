//! A run's control socket while an engine command runs in this process: the engine's
//! events (already the protocol's) go out as they are to every attached client and to
//! in-process listeners such as the headless printer, with the runner's own (settings
//! changed, the gates' verdicts, every sample of the run's monitor, the end); each is
//! folded into the [`RunView`] that `status` answers from. Commands from `zdm ctl` and
//! the console drive the engine's [`BackfillControl`], and each one that changes the run
//! is audited.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::Connection;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::view::RunView;
use crate::audit;
use crate::config::Config;
use crate::control::{runtime_dir, CommandRequest, EventSender, RunInfo, Server, Target};
use crate::engine::identity;
use crate::engine::{BackfillControl, Outcome};
use crate::gates::Report;
use crate::monitor::Monitor;
use crate::notify::{Notifier, Origin};
use crate::protocol::Observing;
use crate::protocol::{Command, Event, Level, Reply, RunStatus, Stamped, Status};

/// How long a command waits for its audit row before it is answered anyway (the change
/// is applied first: answerer the run matters more than recording it).
const AUDIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a `confirm_contract` waits for the waiting command's answer (it records the
/// confirmation in `zdm.audit` first).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// A `confirm_contract` from a client, handed to the command waiting for it, which
/// answers on `reply` (refusing a wrong name or a gate not overridden, or accepting).
#[derive(Debug)]
pub struct Confirmation {
    pub confirmation: String,
    pub overrides: Vec<String>,
    pub reply: oneshot::Sender<Reply>,
}

/// Where confirmations go while a command waits for one.
type ConfirmationSlot = Arc<Mutex<Option<mpsc::Sender<Confirmation>>>>;

/// The served side of one run. Create it with [`Served::start`], hand the returned sender
/// to the engine (`Events::to`), and end it with [`Served::finish`] once the engine is
/// closed.
pub struct Served {
    /// None when the socket could not be opened (the run goes on without it; said once).
    server: Option<Server>,
    publisher: Publisher,
    relay: JoinHandle<()>,
    answering: Option<JoinHandle<()>>,
    /// Forwards the run's monitor samples, once one watches the database.
    metrics: Option<JoinHandle<()>>,
    command: &'static str,
    confirmations: ConfirmationSlot,
    /// Sends the run's alerts to the configured sinks (None: no `[alerts]` sinks).
    notifier: Option<Notifier>,
    /// The Prometheus endpoint (`--metrics-listen`), when asked for.
    endpoint: Option<super::metrics::Endpoint>,
}

/// Sends an event to every listener after folding it into the view (so `status` never
/// lags the stream). The engine, the answering task and the metrics forwarder send
/// through it; the view's lock orders them, so the view folds what clients read, in
/// their order.
#[derive(Clone)]
struct Publisher {
    view: Arc<Mutex<RunView>>,
    events: EventSender,
}

impl Publisher {
    fn send(&self, event: Event) {
        let mut view = lock(&self.view);
        if let Event::StatusChanged { status, .. } = &event {
            if view.status == Some(*status) {
                // No news (a rollback announcing the status it started in): not sent.
                return;
            }
        }
        view.apply(&event);
        // Never blocks (a broadcast): holding the view meanwhile is cheap.
        self.events.send(event);
    }
}

impl Served {
    /// Serves the socket of `migration` while `command` (`start`, `complete`, `rollback`)
    /// runs; `status` is the migration's status before the command's first step (`None`
    /// when not known yet). Engine events sent on the returned sender go to the socket's
    /// clients and to [`Served::subscribe`]rs. A socket that cannot be opened is reported
    /// on stderr and in the log; the run itself goes on.
    pub async fn start(
        config: &Config,
        command: &'static str,
        migration: &str,
        status: Option<Status>,
        control: BackfillControl,
    ) -> (Served, UnboundedSender<Event>) {
        let events = EventSender::default();
        let publisher = Publisher {
            view: Arc::new(Mutex::new(RunView::new(migration, status))),
            events: events.clone(),
        };
        // Subscribed before the first event, so the alerts miss none.
        let notifier = Notifier::start(
            &config.alerts,
            Origin {
                migration: migration.to_string(),
                database: config
                    .database_url()
                    .map(|url| url.to_string())
                    .unwrap_or_default(),
                host: nix::unistd::gethostname()
                    .ok()
                    .and_then(|name| name.into_string().ok())
                    .unwrap_or_default(),
            },
            events.subscribe(),
        );
        let endpoint = match config.metrics_listen {
            None => None,
            Some(address) => {
                match super::metrics::Endpoint::start(address, migration, events.subscribe()).await
                {
                    Ok(endpoint) => {
                        tracing::info!(address = %endpoint.address, "Prometheus metrics served");
                        Some(endpoint)
                    }
                    Err(error) => {
                        // The run matters more than its dashboard: said, and it goes on.
                        tracing::warn!(%address, %error, "the metrics endpoint cannot listen");
                        eprintln!(
                            "warning: cannot serve metrics on {address}: {error}; the run goes                              on without them"
                        );
                        None
                    }
                }
            }
        };
        let (engine_events, receiver) = mpsc::unbounded_channel();
        let relay = tokio::spawn(relay(receiver, publisher.clone()));
        let confirmations = ConfirmationSlot::default();
        let (server, answering) = match open(config, migration, events).await {
            Ok((server, commands)) => {
                let answerer = Answerer {
                    url: config.database_url().ok().cloned(),
                    control,
                    publisher: publisher.clone(),
                    confirmations: confirmations.clone(),
                };
                (Some(server), Some(tokio::spawn(answer(commands, answerer))))
            }
            Err(why) => {
                tracing::warn!(%why, "the run goes on without a control socket");
                eprintln!(
                    "warning: {why}; the run goes on, but `zdm ctl` and `zdm attach` cannot \
                     reach it"
                );
                (None, None)
            }
        };
        let served = Served {
            server,
            publisher,
            relay,
            answering,
            metrics: None,
            command,
            confirmations,
            notifier,
            endpoint,
        };
        (served, engine_events)
    }

    /// A listener in this process that sees every event from now on, as clients do.
    /// Whether the run's control socket is open (a confirmation or a `zdm ctl` can reach it).
    pub fn has_socket(&self) -> bool {
        self.server.is_some()
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Stamped> {
        self.publisher.events.subscribe()
    }

    /// Sends a log line to every attached client.
    pub fn log(&self, level: Level, text: impl Into<String>) {
        self.publisher.send(Event::Log {
            level,
            text: text.into(),
        });
    }

    /// Sends the contract gates' verdicts (before contract runs, whatever they decided).
    pub fn gates_evaluated(&self, report: &Report) {
        self.publisher.send(Event::GatesEvaluated(report.clone()));
    }

    /// Sends where the gates are while their window runs (the countdown, each verdict as
    /// it settles).
    pub fn gates_observing(&self, observing: Observing) {
        self.publisher.send(Event::GatesObserving(observing));
    }

    /// Sends that the contract waits for its confirmation, `remaining` longer at most.
    pub fn awaiting_confirmation(&self, blocking: Vec<String>, remaining: Duration) {
        let migration = lock(&self.publisher.view).migration.clone();
        self.publisher.send(Event::AwaitingConfirmation {
            migration,
            blocking,
            remaining,
        });
    }

    /// From now on `confirm_contract` commands come to the returned receiver (until it is
    /// dropped: then they are refused as not awaited).
    pub fn await_confirmations(&self) -> mpsc::Receiver<Confirmation> {
        let (sender, receiver) = mpsc::channel(1);
        *self
            .confirmations
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(sender);
        receiver
    }

    /// Sends every sample of `monitor` (the run's one sampler, whose figures its throttle
    /// acts on) from now on, until the run ends.
    pub fn stream_metrics(&mut self, monitor: &Monitor) {
        let mut samples = monitor.subscribe();
        let publisher = self.publisher.clone();
        let forward = tokio::spawn(async move {
            while samples.changed().await.is_ok() {
                let metrics = samples.borrow_and_update().clone();
                // Sequence 0 is the placeholder before the first sample.
                if metrics.sequence > 0 {
                    publisher.send(Event::Metrics(Box::new((*metrics).clone())));
                }
            }
        });
        if let Some(previous) = self.metrics.replace(forward) {
            previous.abort();
        }
    }

    /// Ends the run's socket after the engine closed (so every engine event was relayed):
    /// sends the migration's new status and a `Finished` event with the outcome, lets
    /// attached clients read them, and removes the socket.
    pub async fn finish(self, outcome: Result<&Outcome, String>) {
        // The engine's sender is gone with the engine: the relay ends after the last event.
        let _ = self.relay.await;
        if let Some(metrics) = self.metrics {
            metrics.abort();
        }
        let migration = lock(&self.publisher.view).migration.clone();
        let (ok, message) = match outcome {
            Ok(outcome) => {
                let status = match outcome {
                    Outcome::Ran { status, .. } | Outcome::NothingToDo { status, .. } => *status,
                };
                // Sent unless the engine already said so.
                self.publisher.send(Event::StatusChanged {
                    migration: migration.clone(),
                    status,
                });
                (true, outcome.to_string())
            }
            Err(error) => (false, error),
        };
        self.publisher.send(Event::Finished {
            command: self.command.to_string(),
            migration,
            ok,
            message,
        });
        // The last alerts (the run finished or failed) go out before the command exits.
        if let Some(notifier) = self.notifier {
            notifier.finish().await;
        }
        if let Some(endpoint) = self.endpoint {
            endpoint.stop();
        }
        // The socket drains first: a command being answered (`abort`, whose audit row is
        // still being written as the run stops) gets its reply out rather than a
        // "not applied" for a change that was applied.
        if let Some(server) = self.server {
            server.shutdown().await;
        }
        if let Some(answering) = self.answering {
            answering.abort();
        }
    }
}

/// The socket of `migration` on the configured target.
async fn open(
    config: &Config,
    migration: &str,
    events: EventSender,
) -> Result<(Server, mpsc::Receiver<CommandRequest>), String> {
    let url = config.database_url().map_err(|e| e.to_string())?;
    let target = Target::from_url(url).map_err(|e| format!("the database URL {url}: {e}"))?;
    Server::start_with(&runtime_dir(), RunInfo::new(migration, target), events)
        .await
        .map_err(|e| e.to_string())
}

fn lock(view: &Mutex<RunView>) -> std::sync::MutexGuard<'_, RunView> {
    // A panic elsewhere while holding the view leaves plain data: keep using it.
    view.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Publishes the engine's events until the engine's sender is dropped.
async fn relay(mut receiver: UnboundedReceiver<Event>, publisher: Publisher) {
    while let Some(event) = receiver.recv().await {
        publisher.send(event);
    }
}

/// What answering commands needs.
struct Answerer {
    /// Where audit rows go (None: the URL was unusable, which `open` already reported).
    url: Option<crate::db::DatabaseUrl>,
    control: BackfillControl,
    publisher: Publisher,
    confirmations: ConfirmationSlot,
}

/// Answers commands until the server stops.
async fn answer(mut commands: mpsc::Receiver<CommandRequest>, answerer: Answerer) {
    while let Some((command, reply_to)) = commands.recv().await {
        if let Command::ConfirmContract {
            confirmation,
            overrides,
        } = command
        {
            let reply = answerer.confirm(confirmation, overrides).await;
            let _ = reply_to.send(reply);
            continue;
        }
        let mut reply = answerer.apply(&command);
        if reply.is_ok() {
            if let Err(why) = answerer.audit(&command).await {
                tracing::warn!(%why, command = command.name(), "not recorded in zdm.audit");
                answerer.publisher.send(Event::Log {
                    level: Level::Warning,
                    text: format!("`{}` was applied but {why}", command.name()),
                });
                if let Reply::Done { message } = &mut reply {
                    message.push_str(&format!(" (warning: {why})"));
                }
            }
        }
        // The client may have gone meanwhile: nothing to do about it.
        let _ = reply_to.send(reply);
    }
}

impl Answerer {
    /// Hands a contract confirmation to the command waiting for one and returns its answer.
    async fn confirm(&self, confirmation: String, overrides: Vec<String>) -> Reply {
        let waiting = self
            .confirmations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let migration = lock(&self.publisher.view).migration.clone();
        let not_waiting = || {
            Reply::error(format!(
                "this run of {migration} is not waiting for a contract confirmation (a run \
                 started by `zdm complete {migration} --await-confirmation` waits once its \
                 gates have judged)"
            ))
        };
        let Some(waiting) = waiting else {
            return not_waiting();
        };
        let (reply, answer) = oneshot::channel();
        let request = Confirmation {
            confirmation,
            overrides,
            reply,
        };
        if waiting.send(request).await.is_err() {
            return not_waiting();
        }
        match tokio::time::timeout(CONFIRM_TIMEOUT, answer).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => not_waiting(),
            Err(_) => Reply::error(format!(
                "the run did not answer the confirmation within {} s; see its log",
                CONFIRM_TIMEOUT.as_secs()
            )),
        }
    }

    /// Applies one command to the run and says what happened.
    fn apply(&self, command: &Command) -> Reply {
        let control = &self.control;
        let backfilling = lock(&self.publisher.view).backfilling();
        let when = if backfilling {
            "after the current batch (its checkpoint commits first)"
        } else {
            "when the backfill begins (none runs yet)"
        };
        match command {
            Command::Status => Reply::Status(Box::new(self.status())),
            Command::Get { key } => match control.settings().get(*key) {
                Some(value) => Reply::Value(value),
                None => {
                    Reply::error(crate::settings::SettingError::NotLive { key: *key }.to_string())
                }
            },
            Command::Pause => match control.paused_by() {
                Some(by) => Reply::error(format!("the backfill is already paused ({by})")),
                None => {
                    control.pause("paused by the operator");
                    Reply::done(format!("pausing {when}; `resume` continues"))
                }
            },
            Command::Resume => match control.paused_by() {
                None => Reply::error("the backfill is not paused"),
                Some(_) => {
                    control.resume();
                    Reply::done("resumed: the next batch runs now (throttle permitting)")
                }
            },
            Command::Set(setting) => {
                let mut result = Ok(());
                control.update(|settings| result = settings.apply(setting.clone()));
                match result {
                    Err(refused) => Reply::error(refused.to_string()),
                    Ok(()) => {
                        // Applied, so live: it reads back (else the value given is it).
                        let now = control
                            .settings()
                            .get(setting.key())
                            .unwrap_or_else(|| setting.clone());
                        self.publisher.send(Event::SettingChanged(now.clone()));
                        Reply::Value(now)
                    }
                }
            }
            Command::Throttle => match control.manual_throttle_by() {
                Some(_) => Reply::error("the manual throttle is already on"),
                None => {
                    control.throttle("the operator");
                    Reply::done(format!(
                        "manual throttle on: the backfill waits {when} until `no-throttle`"
                    ))
                }
            },
            Command::NoThrottle => match control.manual_throttle_by() {
                None => Reply::error("the manual throttle is not on"),
                Some(_) => {
                    control.clear_throttle();
                    Reply::done("manual throttle off (automatic throttle inputs still apply)")
                }
            },
            // Handled by `confirm` before this.
            Command::ConfirmContract { .. } => Reply::error("not a command to apply"),
            Command::Abort => match control.stop_requested() {
                Some(why) => Reply::error(format!("the run is already stopping ({why})")),
                None if lock(&self.publisher.view).awaiting_confirmation => {
                    control.stop("contract cancelled by the operator");
                    Reply::done("contract cancelled: nothing was contracted")
                }
                None => {
                    control.stop("aborted by the operator");
                    let name = lock(&self.publisher.view).migration.clone();
                    // A stop lands between steps, or between batches of a backfill.
                    let stop_when = if backfilling {
                        "after the current batch (its checkpoint commits first)"
                    } else {
                        "after the current step (every step commits whole or not at all)"
                    };
                    Reply::done(format!(
                        "stopping {stop_when}; nothing is rolled back, and `zdm start {name}` \
                         resumes from there"
                    ))
                }
            },
        }
    }

    fn status(&self) -> RunStatus {
        let view = lock(&self.publisher.view);
        RunStatus {
            migration: view.migration.clone(),
            status: view.status,
            step: view.step.clone(),
            progress: view.progress.clone(),
            paused: self.control.paused_by().is_some(),
            manual_throttle: self.control.manual_throttle_by().is_some(),
            throttle_reasons: view.held_back_by(),
            settings: self.control.settings().all(),
        }
    }

    /// Records a command that changed the run in `zdm.audit`, on a connection of its own.
    async fn audit(&self, command: &Command) -> Result<(), String> {
        let migration = lock(&self.publisher.view).migration.clone();
        if audit::entry_for_command(&migration, command).is_none() {
            return Ok(());
        }
        let Some(url) = self.url.clone() else {
            return Err("it is not recorded in zdm.audit (no usable database URL)".to_string());
        };
        let record = record(url, migration, command.clone());
        match tokio::time::timeout(AUDIT_TIMEOUT, record).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(format!("it is not recorded in zdm.audit: {why}")),
            Err(_) => Err(format!(
                "it is not recorded in zdm.audit: the database did not answer within {} s",
                AUDIT_TIMEOUT.as_secs()
            )),
        }
    }
}

/// Appends the audit row of `command` on a blocking thread with a runtime of its own:
/// sqlx's executor bounds keep the compiler from proving the future `Send`, so it cannot
/// run in the answering task itself.
async fn record(
    url: crate::db::DatabaseUrl,
    migration: String,
    command: Command,
) -> Result<(), String> {
    let recorded = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime for it: {e}"))?;
        runtime.block_on(async {
            let Some(entry) = audit::entry_for_command(&migration, &command) else {
                return Ok(());
            };
            let mut conn = identity::connect(&url).await.map_err(|e| e.to_string())?;
            let recorded = audit::record(&mut conn, entry).await;
            let _ = conn.close().await;
            recorded.map_err(|e| e.to_string())
        })
    });
    recorded
        .await
        .unwrap_or_else(|e| Err(format!("its thread failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_read_what_the_view_folds_and_no_status_that_is_no_news() {
        let publisher = Publisher {
            view: Arc::new(Mutex::new(RunView::new("m", Some(Status::RollingBack)))),
            events: EventSender::default(),
        };
        let mut clients = publisher.events.subscribe();
        let status = |status| Event::StatusChanged {
            migration: "m".to_string(),
            status,
        };
        publisher.send(status(Status::RollingBack));
        publisher.send(status(Status::RolledBack));
        let Ok(first) = clients.try_recv() else {
            panic!("the news was not sent");
        };
        assert_eq!(first.event, status(Status::RolledBack));
        assert!(clients.try_recv().is_err(), "one event, not two");
        assert_eq!(lock(&publisher.view).status, Some(Status::RolledBack));
    }
}
