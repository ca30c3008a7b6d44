//! Instruction following and multi-turn chat: turns rendered into the encoder input by a
//! template, oldest turns dropped (and reported) when the history outgrows the input limit.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::generate::{generate_encoded, FinishReason, GenerationParams, Observer};
use crate::model::Model;
use crate::settings::Settings;
use crate::tasks::nonblank;
use crate::text::Encoded;

pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";
pub const DEFAULT_CHAT_TEMPLATE: &str = "{system}\n{history}User: {user}\nAssistant:";
pub const DEFAULT_TURN_TEMPLATE: &str = "User: {user}\nAssistant: {assistant}\n";
/// Ends a reply where the model starts writing the user's next turn.
pub const DEFAULT_STOP: &str = "\nUser:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub user: String,
    pub assistant: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    pub text: String,
    pub finish_reason: FinishReason,
    /// Oldest turns removed from the history by this call to fit the input limit.
    pub dropped_turns: usize,
    /// Encoder input length of this turn's prompt.
    pub prompt_tokens: usize,
    pub input_truncated: bool,
}

/// A conversation: the model, its settings and the turns so far. One thread at a time.
pub struct Chat {
    model: Arc<Model>,
    task: crate::tasks::TaskSettings,
    gen: GenerationParams,
    history: Vec<Turn>,
}

impl Chat {
    pub fn new(model: Arc<Model>, params: &Settings) -> Result<Self> {
        model.decoder()?;
        let mut defaults = crate::tasks::new_generation_settings();
        if !["max_length", "max_new_tokens"].iter().any(|k| model.config.generation.is_set(k)) {
            defaults.set_int("max_new_tokens", 256)?;
        }
        let mut caller = params.clone();
        if !caller.is_set("stop_strings") {
            caller.set_str("stop_strings", &serde_json::json!([DEFAULT_STOP]).to_string())?;
        }
        let gen = GenerationParams::resolve(&defaults.overlaid(&model.config.generation), &caller, model.vocab_size())?;
        if gen.num_return_sequences > 1 {
            return Err(Error::invalid_param("num_return_sequences", "a chat reply is one sequence"));
        }
        Ok(Self { model, task: crate::tasks::TaskSettings::parse(params), gen, history: Vec::new() })
    }

    pub fn history(&self) -> &[Turn] {
        &self.history
    }

    pub fn reset(&mut self) {
        self.history.clear();
    }

    /// The encoder input for `user` after the turns `history`.
    pub fn render(&self, history: &[Turn], user: &str) -> String {
        let t = &self.task;
        let past: String =
            history.iter().map(|turn| t.chat_turn_template.replace("{user}", &turn.user).replace("{assistant}", &turn.assistant)).collect();
        t.chat_template.replace("{system}", &t.system_prompt).replace("{history}", &past).replace("{user}", user)
    }

    /// Answers `user`, streaming the reply to `observer`; the turn joins the history unless the
    /// observer cancelled it.
    pub fn send(&mut self, user: &str, observer: Option<&mut dyn Observer>) -> Result<ChatReply> {
        let user = nonblank(user, "the message")?.trim();
        let limit = self.gen.max_input_tokens.or(self.model.config.max_input_tokens);
        let (encoded, dropped) = self.fit(user, limit)?;
        let out = generate_encoded(&self.model, std::slice::from_ref(&encoded), &self.gen, observer)?;
        let seq = &out[0].sequences[0];
        // A cancelled turn leaves the history as it was, old turns included.
        let cancelled = seq.finish_reason == FinishReason::Cancelled;
        if !cancelled {
            self.history.drain(..dropped);
            self.history.push(Turn { user: user.to_string(), assistant: seq.text.trim().to_string() });
        }
        Ok(ChatReply {
            text: seq.text.clone(),
            finish_reason: seq.finish_reason,
            dropped_turns: if cancelled { 0 } else { dropped },
            prompt_tokens: encoded.ids.len(),
            input_truncated: encoded.truncated,
        })
    }

    /// The prompt with as many recent turns as fit, and how many old ones it leaves out.
    fn fit(&self, user: &str, limit: Option<usize>) -> Result<(Encoded, usize)> {
        let tokenizer = &self.model.tokenizer;
        for dropped in 0..=self.history.len() {
            let prompt = self.render(&self.history[dropped..], user);
            match tokenizer.encode(&prompt, limit, false, 0) {
                Ok(e) => return Ok((e, dropped)),
                Err(Error::InputTooLong { .. }) if dropped < self.history.len() => continue,
                Err(Error::InputTooLong { .. }) if self.gen.truncate_input => {
                    return Ok((tokenizer.encode(&prompt, limit, true, 0)?, dropped));
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns at its last iteration")
    }
}

/// One question, no history.
pub fn assist(model: Arc<Model>, question: &str, params: &Settings, observer: Option<&mut dyn Observer>) -> Result<ChatReply> {
    Chat::new(model, params)?.send(question, observer)
}
