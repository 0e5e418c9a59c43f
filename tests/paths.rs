//! Where state lives when paths are relative: the README's run command uses the default
//! `allman_data`, relative to the working directory. Every opener must accept that, and the
//! logs and errors name the absolute place.

mod common;

use common::fresh_dir as fresh_cwd;
use common::Server;
use std::path::Path;
use std::process::{Command, Stdio};

/// Serves in `cwd` with `args`/`env`, sends one message, restarts in the same directory and
/// drains it there: the message survived in the state directory `expected_data`, under `cwd`.
fn serves_and_recovers(args: &[&str], env: &[(&str, &str)], expected_data: &str) {
    let cwd = fresh_cwd();
    let info_log = [("RUST_LOG", "allman=info,glommio=warn")];
    let env_with_log: Vec<(&str, &str)> = env.iter().chain(&info_log).copied().collect();
    let mut first = Server::start_in_cwd(&cwd, args, &env_with_log);
    let mut client = first.client();
    client.create_agent("paths", "Sender");
    client.create_agent("paths", "Reader");
    let sent = client.send("Sender", &["Reader"], "kept", "across a restart");
    let data = cwd.join(expected_data);
    assert!(
        first.wait_for_log(&format!("data_dir={}", data.display()), common::IO_TIMEOUT),
        "the start-up log names the absolute data directory {}",
        data.display()
    );
    assert!(first.terminate().success(), "a clean stop");
    assert!(
        data.join("LOCK").exists(),
        "state lives in {}",
        data.display()
    );
    assert!(
        data.join("log").is_dir(),
        "the shards' logs are in {}",
        data.display()
    );

    let restarted = Server::start_in_cwd(&cwd, args, env);
    let messages = restarted.client().inbox("Reader");
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["id"], sent["id"]);
    assert_eq!(messages[0]["subject"], "kept");
    drop(first);
}

#[test]
fn the_default_data_dir_is_relative_to_the_working_directory_and_survives_a_restart() {
    serves_and_recovers(&[], &[], "allman_data");
}

#[test]
fn a_relative_data_dir_flag_works() {
    serves_and_recovers(&["--data-dir", "./state"], &[], "state");
}

#[test]
fn a_relative_data_dir_environment_variable_works_with_relative_index_and_repo() {
    serves_and_recovers(
        &[],
        &[
            ("DATA_DIR", "env-state"),
            ("INDEX_PATH", "search/index"),
            ("REPO_ROOT", "./audit"),
        ],
        "env-state",
    );
}

/// The index and the audit repository follow relative settings too.
#[test]
fn relative_index_and_repository_are_created_under_the_working_directory() {
    let cwd = fresh_cwd();
    let mut server = Server::start_in_cwd(
        &cwd,
        &["--index-path", "idx", "--repo-root", "git/audit"],
        &[],
    );
    server.client().create_agent("paths", "Audited");
    assert!(server.terminate().success());
    assert!(
        cwd.join("idx/meta.json").exists(),
        "the index is in cwd/idx"
    );
    assert!(
        cwd.join("git/audit/HEAD").exists(),
        "the audit repository is in cwd/git/audit"
    );
    assert!(cwd.join("allman_data/LOCK").exists());
}

/// A relative data directory that cannot be used is named by its absolute path.
#[test]
fn an_unusable_relative_data_dir_is_named_absolutely() {
    let cwd = fresh_cwd();
    std::fs::write(cwd.join("blocked"), b"a file, not a directory").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_allman"))
        .current_dir(&cwd)
        .args(["--port", "0", "--data-dir", "blocked"])
        .env_remove("DATA_DIR")
        .env_remove("INDEX_PATH")
        .env_remove("REPO_ROOT")
        .stdin(Stdio::null())
        .output()
        .expect("run allman");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let absolute = Path::new(&cwd).join("blocked");
    assert!(
        stderr.contains(&format!("{}", absolute.display())),
        "names {}: {stderr}",
        absolute.display()
    );
    let _ = std::fs::remove_dir_all(&cwd);
}
