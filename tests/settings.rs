//! Backfill and throttle settings in `zdm.toml` as a user meets them at the command line:
//! an old name still works and is pointed out with its position and the new name; a value
//! out of range stops the command at its `file:line:col`, with the range (as `zdm ctl set`
//! refuses it), instead of being clamped.

mod common;

use std::process::{Command, Output};

/// `zdm status` with `zdm.toml` holding `config`, from a scratch directory and without a
/// database: the file is read (and judged) before the database is needed.
fn status_with_config(config: &str) -> Output {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("zdm.toml"), config).expect("write zdm.toml");
    let mut command = Command::new(common::zdm_binary());
    for name in common::DATABASE_ENV {
        command.env_remove(name);
    }
    command
        .arg("status")
        .current_dir(dir.path())
        .env("ZDM_LOG_FILE", dir.path().join("zdm.log"))
        .output()
        .expect("run zdm")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn old_names_in_zdm_toml_are_read_with_a_warning_naming_the_new_one() {
    let output = status_with_config(
        "backfill_batch_size = 500\n\n[backfill]\ntarget_batch_ms = 300\n\n\
         [throttle]\nmax_canary_factor = 6\nmax_replica_lag_ms = -1\n",
    );
    let said = stderr(&output);
    for warning in [
        "warning: zdm.toml:1:1: `backfill_batch_size` is an old name, accepted until the next \
         release: write `fixed_batch_rows = 500` in [backfill] instead",
        "warning: zdm.toml:4:1: `target_batch_ms` is an old name, accepted until the next \
         release: write `batch_target = \"300ms\"` instead",
        "warning: zdm.toml:7:1: `max_canary_factor` is an old name",
        "write `max_canary_slowdown = \"6x\"`",
        "warning: zdm.toml:8:1: `max_replica_lag_ms` is an old name",
        "write `max_replica_lag = \"none\"`",
    ] {
        assert!(said.contains(warning), "{warning}\nmissing from: {said}");
    }
    // The file was accepted: the command went on to ask for a database.
    assert!(!output.status.success());
    assert!(said.contains("no database to work on"), "{said}");
}

#[test]
fn new_names_in_zdm_toml_give_no_warning() {
    let output = status_with_config(
        "[backfill]\nbatch_target = \"300ms\"\nfixed_batch_rows = 500\n\
         max_rows_per_second = \"5000/s\"\n\n[throttle]\nmax_canary_slowdown = \"6x\"\n\
         max_replica_lag = \"none\"\nmax_host_cpu_percent = \"80%\"\n",
    );
    let said = stderr(&output);
    assert!(!said.contains("warning"), "{said}");
    assert!(said.contains("no database to work on"), "{said}");
}

#[test]
fn a_value_out_of_range_in_zdm_toml_is_an_error_at_its_position_with_the_range() {
    for (config, error) in [
        (
            "[backfill]\nbatch_target = \"5ms\"\n",
            "zdm.toml:2:16: batch_target: `5ms` is not a duration (10ms–1m), e.g. `200ms`",
        ),
        (
            "[throttle]\nmax_host_cpu_percent = 150\n",
            "zdm.toml:2:24: max_host_cpu_percent: `150` is not a percentage (1%–100%), e.g. \
             `80%`, or `none` to turn it off",
        ),
        (
            "[backfill]\nmax_batch_rows = 0\n",
            "zdm.toml:2:18: max_batch_rows: `0` is not a whole number of rows (1–10,000,000)",
        ),
    ] {
        let output = status_with_config(config);
        assert!(!output.status.success(), "{config}");
        let said = stderr(&output);
        assert!(said.contains(error), "{config}: {said}");
        assert!(!said.contains("no database to work on"), "{said}");
    }
}
