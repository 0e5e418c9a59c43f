//! `create_agent(project_key; name_hint, program, model, task_description)` ->
//! `{id, project_id, name, program, model, task_description}`, plus `agent_token` once, when
//! agent tokens are on and the agent gets its token.

use super::args::{object, optional_str, required_str};
use super::send_message::MAX_TOKEN_BYTES;
use super::{
    unreachable_reply, valid_agent_name, ToolError, ToolOutput, Toolbox, MAX_AGENT_NAME_BYTES,
    MAX_LABEL_BYTES, MAX_NAME_ATTEMPTS, MAX_PROJECT_KEY_BYTES,
};
use crate::clock::now_ms;
use crate::json::{present, write_str, write_uuid};
use serde::Deserialize;
use serde_json::value::RawValue;
use shards::{AgentProfile, RegisterMode, Registration, Reply, Request};
use std::borrow::Cow;
use uuid::Uuid;

#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    project_key: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    name_hint: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    program: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    model: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    task_description: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    agent_token: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct Args<'a> {
    project_key: Cow<'a, str>,
    name_hint: Option<Cow<'a, str>>,
    program: Option<Cow<'a, str>>,
    model: Option<Cow<'a, str>>,
    task_description: Option<Cow<'a, str>>,
    agent_token: Option<Cow<'a, str>>,
}

/// Longest task description: a line or a paragraph, shown in rosters.
pub const MAX_TASK_BYTES: usize = 1024;

pub fn parse(arguments: Option<&RawValue>) -> Result<Args<'_>, ToolError> {
    let fields: Fields<'_> = object(arguments)?;
    let name_hint = optional_str("name_hint", fields.name_hint, MAX_AGENT_NAME_BYTES)?;
    if let Some(name) = &name_hint {
        if !valid_agent_name(name) {
            return Err(ToolError::InvalidArgument {
                name: "name_hint",
                problem: format!(
                    "{name:?} is not a valid agent name: use 1-{MAX_AGENT_NAME_BYTES} ASCII letters, digits, '_' or '-'"
                ),
            });
        }
    }
    Ok(Args {
        project_key: required_str("project_key", fields.project_key, MAX_PROJECT_KEY_BYTES)?,
        name_hint,
        program: optional_str("program", fields.program, MAX_LABEL_BYTES)?,
        model: optional_str("model", fields.model, MAX_LABEL_BYTES)?,
        task_description: optional_str(
            "task_description",
            fields.task_description,
            MAX_TASK_BYTES,
        )?,
        agent_token: optional_str("agent_token", fields.agent_token, MAX_TOKEN_BYTES)?,
    })
}

/// The project id of a project key: UUID v5 in the DNS namespace (part of the contract).
pub fn project_id_of(project_key: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_DNS, project_key.as_bytes())
}

/// A project named by `project_key` or `project_id` (both: they must agree).
pub fn project_arg(key: Option<&RawValue>, id: Option<&RawValue>) -> Result<Uuid, ToolError> {
    let key = optional_str("project_key", key, MAX_PROJECT_KEY_BYTES)?;
    let id: Option<Uuid> = super::args::optional_parsed("project_id", id, "a UUID")?;
    match (key, id) {
        (Some(key), None) => Ok(project_id_of(&key)),
        (None, Some(id)) => Ok(id),
        (Some(key), Some(id)) if project_id_of(&key) == id => Ok(id),
        (Some(_), Some(_)) => Err(ToolError::InvalidArgument {
            name: "project_id",
            problem: "does not match project_key; give one of them".into(),
        }),
        (None, None) => Err(ToolError::MissingArgument("project_key")),
    }
}

pub async fn run(tools: &Toolbox, args: Args<'_>) -> Result<ToolOutput, ToolError> {
    let project_id = project_id_of(&args.project_key);
    // Room for the profile on its way to the git writer, taken before anything changes and
    // held until the reply: the owner charges the profile again when it hands it over (once
    // its log record is durable).
    let _room = tools.audit.reserve(profile_bytes(&args)).await?;
    // Made before the agent is asked for, so the owner can set its hash in the same step.
    let new_token = tools.settings.agent_auth.then(super::new_agent_token);
    let new_token_hash = new_token.as_deref().and_then(|t| tools.token_hash(Some(t)));
    let token = tools.token_hash(args.agent_token.as_deref());
    for attempt in 0..MAX_NAME_ATTEMPTS {
        let (name, mode) = match &args.name_hint {
            Some(hint) => (hint.to_string(), RegisterMode::Upsert),
            None => (
                tools.ids.borrow_mut().agent_name(attempt),
                RegisterMode::CreateOnly,
            ),
        };
        let registration = Registration {
            name: name.as_str().into(),
            mode,
            new_token_hash,
            token,
            ..registration_of(tools, &args, project_id)
        };
        let owner = tools.shard.owner_of(&name);
        match tools
            .shard
            .call(owner, Request::Register(registration))
            .await?
        {
            Reply::Registered {
                profile,
                created,
                token_issued,
            } => {
                tracing::debug!(agent = %profile.name, created, "agent registered");
                tools
                    .known
                    .borrow_mut()
                    .remember(&profile.name, profile.project_id);
                // The owner hands the profile to the git writer; the reply does not wait.
                let token = if token_issued { new_token } else { None };
                return Ok(ToolOutput::Agent(profile, token));
            }
            Reply::NoAgent => {
                return Err(ToolError::InvalidArgument {
                    name: "agent_token",
                    problem: format!(
                        "updating agent '{name}' takes the agent_token it was given at registration"
                    ),
                })
            }
            Reply::NameTaken {
                project_id: taken_by,
            } => {
                if mode == RegisterMode::Upsert {
                    return Err(ToolError::NameTaken {
                        name,
                        project_id: taken_by,
                    });
                }
            }
            other => unreachable_reply("Register", &other),
        }
    }
    Err(ToolError::NamesExhausted)
}

/// The parts of a registration every attempt shares (name, mode and tokens are set by the
/// caller), with a fresh id.
fn registration_of(tools: &Toolbox, args: &Args<'_>, project_id: Uuid) -> Registration {
    let now = now_ms();
    Registration {
        name: "".into(),
        mode: RegisterMode::Upsert,
        new_id: tools.ids.borrow_mut().uuid_v7(now),
        project_id,
        project_key: (*args.project_key).into(),
        program: args.program.as_deref().map(Into::into),
        model: args.model.as_deref().map(Into::into),
        task_description: args.task_description.as_deref().map(Into::into),
        now_ms: now,
        new_token_hash: None,
        token: None,
    }
}

/// What the profile these arguments make costs the git feed, at most.
fn profile_bytes(args: &Args<'_>) -> usize {
    crate::audit::PROFILE_FIXED_BYTES
        + MAX_AGENT_NAME_BYTES
        + args.project_key.len()
        + args.program.as_deref().map_or(0, str::len)
        + args.model.as_deref().map_or(0, str::len)
        + args.task_description.as_deref().map_or(0, str::len)
}

pub fn write_json(out: &mut Vec<u8>, profile: &AgentProfile, token: Option<&str>) {
    out.extend_from_slice(b"{\"id\":");
    write_uuid(out, &profile.id);
    out.extend_from_slice(b",\"project_id\":");
    write_uuid(out, &profile.project_id);
    out.extend_from_slice(b",\"name\":");
    write_str(out, &profile.name);
    out.extend_from_slice(b",\"program\":");
    write_str(out, &profile.program);
    out.extend_from_slice(b",\"model\":");
    write_str(out, &profile.model);
    if let Some(token) = token {
        out.extend_from_slice(b",\"agent_token\":");
        write_str(out, token);
    }
    out.push(b'}');
}

pub fn definition() -> serde_json::Value {
    serde_json::json!({
        "name": "create_agent",
        "title": "Register an agent",
        "description": "Register an agent in a project and get its mailbox name (invented without name_hint). Registering a name again in the same project updates it; another project's name is refused.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "project_key": {"type": "string", "minLength": 1, "description": "Identifies the project, e.g. its repository path. project_id = UUIDv5(DNS, project_key)."},
                "name_hint": {"type": "string", "pattern": format!("^[A-Za-z0-9_-]{{1,{MAX_AGENT_NAME_BYTES}}}$"), "description": "The agent name to use."},
                "program": {"type": "string", "description": "The agent program, e.g. claude-code."},
                "model": {"type": "string", "description": "The model behind the agent."},
                "task_description": {"type": "string", "maxLength": MAX_TASK_BYTES},
                "agent_token": {"type": "string", "description": "Only with --agent-auth, to update an agent."}
            },
            "required": ["project_key"]
        },
        "outputSchema": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "project_id": {"type": "string", "format": "uuid"},
                "name": {"type": "string"},
                "program": {"type": "string"},
                "model": {"type": "string"},
                "agent_token": {"type": "string", "description": "With --agent-auth, returned once: pass it to every tool acting as this agent."}
            },
            "required": ["id", "project_id", "name", "program", "model"]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_id_is_uuid_v5_of_the_key_in_the_dns_namespace() {
        // Computed independently: python3 -c 'import uuid; print(uuid.uuid5(uuid.NAMESPACE_DNS, "my-project"))'
        assert_eq!(
            project_id_of("my-project").to_string(),
            "e963980a-77a2-5699-beeb-90c6c7c9d332"
        );
    }

    #[test]
    fn bad_name_hint_is_refused_naming_the_argument() {
        let raw = RawValue::from_string(r#"{"project_key":"p","name_hint":"../x"}"#.into())
            .expect("json");
        let error = parse(Some(&raw)).expect_err("invalid name");
        assert!(
            matches!(
                error,
                ToolError::InvalidArgument {
                    name: "name_hint",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn project_key_is_required() {
        let raw = RawValue::from_string(r#"{"name_hint":"a"}"#.into()).expect("json");
        assert_eq!(
            parse(Some(&raw)).map(|_| ()),
            Err(ToolError::MissingArgument("project_key"))
        );
    }
}
