//! Decisions from an OpenAI-compatible chat-completions endpoint.

use super::{Action, Received, Scenario};
use crate::http::{Connection, Url};
use serde_json::{json, Value};

pub struct LlmPolicy {
    connection: Connection,
    path: String,
    model: String,
    api_key: Option<String>,
}

impl LlmPolicy {
    /// From `ALLMAN_LLM_URL` (unset: `None`), `ALLMAN_LLM_MODEL`, `ALLMAN_LLM_API_KEY`.
    pub fn from_env() -> Result<Option<LlmPolicy>, String> {
        let Some(base) = std::env::var("ALLMAN_LLM_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            return Ok(None);
        };
        let model = std::env::var("ALLMAN_LLM_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
        let key = std::env::var("ALLMAN_LLM_API_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        LlmPolicy::new(&base, &model, key).map(Some)
    }

    pub fn new(base: &str, model: &str, api_key: Option<String>) -> Result<LlmPolicy, String> {
        let url = Url::parse(base)?;
        let trimmed = url.path.trim_end_matches('/');
        let path = if trimmed.ends_with("/chat/completions") {
            trimmed.to_string()
        } else {
            format!("{trimmed}/chat/completions")
        };
        Ok(LlmPolicy {
            connection: Connection::new(&url),
            path,
            model: model.to_string(),
            api_key,
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Asks the model what `role` sends this round. The answer must contain a JSON object
    /// `{"messages": [{"to": [roles], "subject": "...", "body": "..."}]}`.
    pub fn decide(
        &mut self,
        scenario: &Scenario,
        role: &str,
        brief: &str,
        round: usize,
        inbox: &[Received],
    ) -> Result<Vec<Action>, String> {
        let roles: Vec<&str> = scenario.roles.iter().map(|(name, _)| *name).collect();
        let system = format!(
            "You are the {role} in a simulation: {}. Your job: {brief}. Other roles: {}. \
             Reply with only a JSON object {{\"messages\": [{{\"to\": [role names], \"subject\": \"...\", \"body\": \"...\"}}]}}; \
             send at most 3 messages, or an empty list.",
            scenario.title,
            roles.join(", ")
        );
        let mut user = format!("Round {} of {}. Your inbox:\n", round + 1, scenario.rounds);
        if inbox.is_empty() {
            user.push_str("(empty)\n");
        }
        for message in inbox {
            user.push_str(&format!(
                "- from {}: {} — {}\n",
                message.from_role, message.subject, message.body
            ));
        }
        let request = json!({
            "model": self.model,
            "temperature": 0.2,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        });
        let auth = self.api_key.as_ref().map(|key| format!("Bearer {key}"));
        let headers: Vec<(&str, &str)> = auth
            .iter()
            .map(|value| ("Authorization", value.as_str()))
            .collect();
        let response = self
            .connection
            .post(&self.path, &headers, request.to_string().as_bytes())
            .map_err(|e| format!("LLM request failed: {e}"))?;
        if response.status != 200 {
            return Err(format!("LLM answered HTTP {}", response.status));
        }
        let body: Value = serde_json::from_slice(&response.body)
            .map_err(|e| format!("LLM response is not JSON: {e}"))?;
        let content = body["choices"][0]["message"]["content"]
            .as_str()
            .ok_or("LLM response has no message content")?;
        parse_actions(content)
    }
}

/// The actions in a model's reply: the outermost JSON object in the text (models often wrap
/// it in prose or a code fence).
pub fn parse_actions(content: &str) -> Result<Vec<Action>, String> {
    let start = content.find('{').ok_or("no JSON object in the reply")?;
    let end = content.rfind('}').ok_or("no JSON object in the reply")?;
    let value: Value =
        serde_json::from_str(&content[start..=end]).map_err(|e| format!("reply JSON: {e}"))?;
    let messages = value["messages"]
        .as_array()
        .ok_or("reply has no \"messages\" array")?;
    Ok(messages
        .iter()
        .take(3)
        .filter_map(|m| {
            let to: Vec<String> = match &m["to"] {
                Value::String(one) => vec![one.clone()],
                Value::Array(many) => many
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect(),
                _ => return None,
            };
            Some(Action {
                to,
                subject: m["subject"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect(),
                body: m["body"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(4000)
                    .collect(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_found_inside_prose_and_fences() {
        let reply = "Sure!\n```json\n{\"messages\": [{\"to\": [\"Seller\"], \"subject\": \"offer\", \"body\": \"$90\"}, {\"to\": \"Escrow\", \"subject\": \"s\", \"body\": \"b\"}]}\n```";
        let actions = parse_actions(reply).expect("parses");
        assert_eq!(
            actions,
            vec![
                Action::new(&["Seller"], "offer", "$90"),
                Action::new(&["Escrow"], "s", "b")
            ]
        );
        assert!(parse_actions("no json here").is_err());
        assert!(parse_actions("{\"other\": 1}").is_err());
    }
}
